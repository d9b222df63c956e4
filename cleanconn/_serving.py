"""``serving()``: listen for the length of a scope, then close everything."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from twisted.internet import tcp, unix
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ._tls import ThrowawayCA
from ._tracking import ForwardingFactory, Tracked, close_and_wait, finish, track
from ._types import CleanconnReactor, check_timeout, default_reactor, enter_once

#: Seconds a scope's exit waits for graceful closes before it aborts.
DEFAULT_TIMEOUT = 5.0

#: The listen backlog of the default endpoint. Twisted's default of 50 drops
#: SYNs when hundreds of clients connect at once; each dropped SYN costs a
#: one-second retransmit.
DEFAULT_BACKLOG = 4096

_PENDING: Any = object()

#: Ports whose stopListening() always completes on the next reactor turn.
_BOUNDED_PORTS = (tcp.Port, unix.Port)


def address_key(address: object) -> object:
    """
    What identifies the client end of a connection: ``(host, port)`` for
    TCP; the (auto-bound, Linux) abstract name of a UNIX client socket;
    else ``None``, and connections are matched in accept order.
    """
    if type(address) is IPv4Address:
        return (address.host, address.port)
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return (host, port)
    name = getattr(address, "name", None)
    if name:
        return ("unix", name)
    return None


def reachable_host(host: str) -> str:
    """A host to connect to for a port bound to ``host``: loopback for a
    wildcard address (``0.0.0.0``, ``::``) of the same family."""
    return _WILDCARDS.get(host, host)


_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def client_key(conn: Tracked) -> object:
    """The :func:`address_key` of the local end of a client connection."""
    transport = conn.transport
    sock = getattr(transport, "socket", None)
    if sock is None:  # TLS: the socket is the transport's under it
        sock = getattr(getattr(transport, "transport", None), "socket", None)
    if sock is None:
        return address_key(transport.getHost())
    # The socket's own name: Twisted's UNIX client getHost() does not report
    # a bound name, and building an address object costs more.
    name = sock.getsockname()
    if type(name) is tuple:
        return name[:2]
    return ("unix", name) if name else None


def _stale(server: Tracked, client: Tracked) -> bool:
    """``server`` was lost before ``client`` even started connecting."""
    return 0 <= server.lost_at < client.seq


@implementer(IProtocolFactory)
class _ServerFactory(ForwardingFactory):
    """Builds the user's protocol and wraps it; forwards start and stop."""

    def __init__(self, factory: IProtocolFactory, port: ServingPort) -> None:
        self._factory = factory
        self._port: ServingPort | None = port
        self._tls = port.tls is not None

    def buildProtocol(self, addr: IAddress) -> Tracked | None:
        port = self._port
        if port is None:  # the scope is over; the listening port is stopped
            return None
        proto = self._factory.buildProtocol(addr)
        if proto is None:
            port._rejected.add(address_key(addr))
            return None
        conn = track(proto, "server", port, self._tls)
        conn.key = address_key(addr)
        return conn


class _TLSServerFactory(TLSMemoryBIOFactory):
    """
    Twisted's TLS server factory, except that it builds no protocol when the
    factory it wraps builds none (Twisted's would wrap ``None`` and fail in
    ``makeConnection``): the port then closes the connection at once.
    """

    def buildProtocol(self, addr: IAddress | None) -> Any:
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)


@implementer(IListeningPort)
class ServingPort:
    """
    The listening port of a :func:`serving` scope.

    It provides :class:`~twisted.internet.interfaces.IListeningPort`, and
    :func:`~cleanconn.connected` accepts it as a target. ``getHost()`` keeps
    answering after the port stopped (Twisted's raises).
    """

    def __init__(
        self,
        reactor: CleanconnReactor,
        factory: IProtocolFactory,
        tls: ThrowawayCA | None,
    ) -> None:
        self._reactor = reactor
        self.factory = factory
        #: The :class:`~cleanconn.ThrowawayCA` of a TLS port, else ``None``:
        #: give its trust to other clients (treq, ``connectSSL``...).
        self.tls = tls
        self._tempdir: str | None = None
        self._port: IListeningPort | None = None
        self._server_factory: _ServerFactory | None = None
        self._address: IAddress | None = None
        self._open: dict[Tracked, None] = {}
        self._errored: list[Tracked] = []
        self._unclaimed: dict[object, Tracked] = {}
        self._claimers: dict[object, Deferred[Tracked]] = {}
        # Connections with no address key, matched in accept order.
        self._unkeyed: deque[Tracked] = deque()
        self._unkeyed_claimers: deque[Deferred[Tracked]] = deque()
        self._rejected: set[object] = set()
        self._peers: dict[int, tuple[object, object]] = {}
        self._stop_result: object = _PENDING
        self._stopping: Deferred[None] | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self.closed = False

    def __repr__(self) -> str:
        return f"<cleanconn.ServingPort {self._address} for {self.factory!r}>"

    # IListeningPort -----------------------------------------------------

    def startListening(self) -> None:
        """Listening starts when the scope is entered; this does nothing."""

    def stopListening(self) -> Deferred[None]:
        """
        Stop listening now; open connections stay open until the exit.

        Calling it inside the scope is allowed: the exit then waits for the
        same stop instead of stopping twice.
        """
        self._stop()
        if self._stop_result is _PENDING:
            d: Deferred[None] = Deferred()
            self._stop_waiters.append(d)
            return d
        if isinstance(self._stop_result, Failure):
            return fail(self._stop_result)
        return succeed(None)

    def getHost(self) -> IAddress:
        """The address the port is (or was) bound to."""
        assert self._address is not None
        return self._address

    # What a test asks about ---------------------------------------------

    @property
    def server_protocols(self) -> list[Any]:
        """The server-side protocols (the factory's own) still connected."""
        return [conn.wrapped for conn in self._open]

    def server_protocol(self, client: object) -> Any:
        """
        The server-side protocol at the other end of ``client``.

        ``client`` is a protocol yielded by :func:`~cleanconn.connected` on
        this port. The answer stays available after that scope ends, so a
        test can assert what the server saw once the client disconnected.
        """
        entry = self._peers.get(id(client))
        if entry is None or entry[0] is not client:
            raise LookupError(
                f"{client!r} was not connected to this port with "
                "cleanconn.connected(port, ...); only those connections "
                "have a known server side (see server_protocols for all)."
            )
        return entry[1]

    # Owner: connection bookkeeping --------------------------------------

    def conn_opened(self, conn: Tracked) -> None:
        self._open[conn] = None

    def conn_made(self, conn: Tracked) -> None:
        if conn.key is None:
            while self._unkeyed_claimers:
                first = self._unkeyed_claimers.popleft()
                if not first.called:
                    first.callback(conn)
                    return
            self._unkeyed.append(conn)
            return
        key = conn.key
        waiter = self._claimers.pop(key, None) if self._claimers else None
        if waiter is not None and not waiter.called:
            waiter.callback(conn)
        else:
            self._unclaimed[key] = conn

    def conn_lost(self, conn: Tracked) -> None:
        del self._open[conn]
        if conn.errors:
            self._errored.append(conn)

    def _claim(self, client: Tracked) -> Deferred[Tracked] | Tracked:
        """The server side of ``client``'s connection, now or later."""
        key = client.key = client_key(client)
        if key is None:
            while self._unkeyed:
                oldest = self._unkeyed.popleft()
                if not _stale(oldest, client):
                    return oldest

            def forget_unkeyed(waiter: Deferred[Tracked]) -> None:
                if waiter in self._unkeyed_claimers:
                    self._unkeyed_claimers.remove(waiter)

            waiter: Deferred[Tracked] = Deferred(forget_unkeyed)
            self._unkeyed_claimers.append(waiter)
            return waiter
        peer = self._unclaimed.pop(key, None)
        if peer is not None and not _stale(peer, client):
            return peer

        def forget(_: Deferred[Tracked]) -> None:
            self._claimers.pop(key, None)

        waiter = Deferred(forget)
        self._claimers[key] = waiter
        return waiter

    def _forget_claim(self, client: Tracked, waiter: Deferred[Tracked]) -> None:
        """``client`` gave up waiting: a later accept must not fire ``waiter``."""
        key = client.key
        if self._claimers.get(key) is waiter:
            del self._claimers[key]
        elif waiter in self._unkeyed_claimers:
            self._unkeyed_claimers.remove(waiter)

    def _remember_peer(self, client: Tracked, server: Tracked) -> None:
        # The protocols only, not their wrappers: little is kept after the
        # connection is gone, for server_protocol() after the client's exit.
        self._peers[id(client.wrapped)] = (client.wrapped, server.wrapped)

    def _stop(self) -> Deferred[None]:
        """Stop the port once; the Deferred fires (with None) when stopped."""
        if self._stopping is None:
            assert self._port is not None
            stopping: Deferred[Any] = maybeDeferred(self._port.stopListening)
            self._stopping = stopping.addBoth(self._stopped)
        return self._stopping

    def _stopped(self, result: object) -> None:
        self._stop_result = result
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

    # The scope ------------------------------------------------------------

    def _listen(
        self, endpoint: object, interface: str, unix: bool | str
    ) -> Deferred[None] | None:
        """Start listening: at once, or when the returned Deferred fires."""
        self._server_factory = _ServerFactory(self.factory, self)
        factory: Any = self._server_factory
        if self.tls is not None:
            factory = _TLSServerFactory(self.tls.server_options(), False, factory)
        reactor: Any = self._reactor
        if unix:
            if unix is True:
                self._tempdir = tempfile.mkdtemp(prefix="cleanconn-")  # mode 0700
                unix = os.path.join(self._tempdir, "socket")
            try:
                self._port = reactor.listenUNIX(
                    unix, factory, backlog=DEFAULT_BACKLOG, mode=0o600
                )
            except BaseException:
                self._remove_tempdir()
                raise
        elif endpoint is None:
            self._port = reactor.listenTCP(
                0, factory, backlog=DEFAULT_BACKLOG, interface=interface
            )
        else:
            if isinstance(endpoint, str):
                endpoint = serverFromString(reactor, endpoint)  # type: ignore[no-untyped-call]
            assert IStreamServerEndpoint.providedBy(endpoint)
            return endpoint.listen(factory).addCallback(self._listening)
        self._listening(self._port)
        return None

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        self._address = port.getHost()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def _until_stopped(self) -> Deferred[None]:
        """
        Fires (with None, whatever the outcome) once the port stopped; the
        stop itself is not cancelled with it.
        """
        waiter: Deferred[None] = Deferred()
        assert self._stopping is not None
        # A plain function, not a method: what runs after the exit runs
        # inside this call, and no frame of this port's own is on the stack
        # then to keep the port alive.
        self._stopping.addBoth(_notify, waiter)
        return waiter

    async def _close(self, timeout: float, body: BaseException | None) -> None:
        errors: list[BaseException] = []
        stopping = self._stop()
        try:
            if self._open or type(self._port) not in _BOUNDED_PORTS:
                await close_and_wait(
                    self._reactor,
                    "serving()",
                    list(self._open),
                    timeout,
                    (stopping, self._address),
                )
            elif self._stop_result is _PENDING:
                # Only the stop of a Twisted TCP or UNIX port is left: it
                # completes on the next reactor turn, so no deadline is kept.
                try:
                    await self._until_stopped()
                except CancelledError:
                    # The port still stops on that turn: wait for it, so that
                    # nothing is left on the reactor, then stay cancelled.
                    if self._stop_result is _PENDING:
                        await self._until_stopped()
                    raise
        except BaseException as e:
            errors.append(e)
        finally:
            self.closed = True
            # Drop the references back to this port (the listening port's
            # factory, and its connections, point to it), so that all of it
            # is freed by reference counting rather than by the collector.
            self._port = None
            if self._server_factory is not None:
                self._server_factory._port = None
            self._unclaimed.clear()
            self._unkeyed.clear()
            self._rejected.clear()
            self._remove_tempdir()
        if isinstance(self._stop_result, Failure):
            errors.append(self._stop_result.value or Exception(self._stop_result))
        if errors or self._errored or self._open:
            finish(body, errors, [*self._errored, *self._open])


def _notify(result: object, waiter: Deferred[None]) -> object:
    """Fire ``waiter`` (a cancelled one ignores it); pass ``result`` on."""
    waiter.callback(None)
    return result


class _Serving:
    def __init__(
        self,
        factory: IProtocolFactory,
        endpoint: object,
        interface: str | None,
        unix: bool | str,
        tls: bool | ThrowawayCA,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if not IProtocolFactory.providedBy(factory):
            raise TypeError(_not_a_factory("serving", factory))
        default_place = endpoint is None and interface is None and unix is False
        if not default_place or tls is not False:
            _check_where(endpoint, interface, unix, tls)
        self._timeout = check_timeout(timeout, "serving()")
        self._endpoint = endpoint
        self._interface = interface or "127.0.0.1"
        self._unix = unix
        ca = ThrowawayCA() if tls is True else (tls or None)
        self._port = ServingPort(default_reactor(reactor), factory, ca)
        self._entered = False

    async def __aenter__(self) -> ServingPort:
        enter_once(self._entered, "serving()")
        self._entered = True
        listening = self._port._listen(self._endpoint, self._interface, self._unix)
        if listening is not None:
            await listening
        return self._port

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Coroutine[Any, Any, None]:
        return self._port._close(self._timeout, exc)


def serving(
    factory: IProtocolFactory,
    endpoint: str | IStreamServerEndpoint | None = None,
    *,
    interface: str | None = None,
    unix: bool | str = False,
    tls: bool | ThrowawayCA = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _Serving:
    """
    Listen with ``factory`` for the length of an ``async with`` block.

    .. code-block:: python

        async with serving(EchoFactory()) as port:
            ...  # port.getHost() is the real address

    The block gets a :class:`ServingPort`. When the block ends, for any
    reason, the port stops listening, every connection it accepted that is
    still open is closed (those made by :func:`connected` and any other), and
    the exit waits for ``stopListening`` and for each server-side
    ``connectionLost``.

    :param factory: any ``IProtocolFactory``; it is not modified.
    :param endpoint: ``None`` for TCP on ``127.0.0.1``, a free port, and a
        listen backlog of 4096; or a server endpoint string; or an
        ``IStreamServerEndpoint``.
    :param interface: listen on TCP on this IP address instead of
        ``127.0.0.1``, e.g. ``"::1"`` for IPv6 (no escaping needed).
    :param unix: ``True`` to listen on a UNIX socket in a private directory
        (mode 0700) that is created now and removed at exit, or the path of
        the socket to listen on.
    :param tls: ``True`` to serve TLS with a fresh in-memory
        :class:`~cleanconn.ThrowawayCA` (``port.tls``); or the
        ``ThrowawayCA`` to use. :func:`~cleanconn.connected` then verifies
        the server against exactly that CA.
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds the exit waits for graceful closes. What is
        still open then is aborted, waited for, and reported by
        :class:`~cleanconn.CleanupTimeout`.
    :raises TypeError: ``factory`` is not a protocol factory, or
        ``endpoint`` is not one of the above.
    :raises ValueError: ``timeout`` is not a positive, finite number.
    """
    return _Serving(factory, endpoint, interface, unix, tls, reactor, timeout)


def _check_where(
    endpoint: object, interface: str | None, unix: object, tls: object
) -> None:
    """Validate where and how :func:`serving` listens, when not the default."""
    if sum((endpoint is not None, interface is not None, bool(unix))) > 1:
        raise TypeError(
            "serving(): give at most one of endpoint, interface= and unix=; "
            "they each say where to listen"
        )
    if interface is not None and not (
        isIPAddress(interface) or isIPv6Address(interface)
    ):
        raise ValueError(
            f"serving(): interface must be an IP address literal such as "
            f"'127.0.0.1' or '::1', got {interface!r}"
        )
    if not isinstance(unix, (bool, str)):
        raise TypeError(
            f"serving(): unix must be True (a private temporary directory) "
            f"or a socket path, got {unix!r}"
        )
    if not isinstance(tls, (bool, ThrowawayCA)):
        raise TypeError(
            f"serving(): tls must be True or a cleanconn.ThrowawayCA, got {tls!r}"
        )
    if not (
        endpoint is None
        or isinstance(endpoint, str)
        or IStreamServerEndpoint.providedBy(endpoint)
    ):
        raise TypeError(
            "serving(): endpoint must be None (TCP on 127.0.0.1, a free "
            "port), a server endpoint string such as "
            "'tcp:0:interface=127.0.0.1', or an IStreamServerEndpoint; "
            f"got {endpoint!r}"
        )


def _not_a_factory(where: str, factory: object) -> str:
    message = (
        f"{where}() needs an IProtocolFactory (such as "
        f"twisted.internet.protocol.Factory), got {factory!r}."
    )
    if isinstance(factory, type) and IProtocol.implementedBy(factory):
        message += (
            f" That is a protocol class: pass Factory.forProtocol({factory.__name__})."
        )
    elif IProtocol.providedBy(factory):
        message += (
            " That is a protocol instance: pass a factory that builds one "
            "protocol per connection, e.g. Factory.forProtocol(cls)."
        )
    return message
