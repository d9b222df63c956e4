"""``serving()``: listen for the length of a scope, then close everything."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, overload

from twisted.internet import tcp, unix
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IStreamServerEndpoint,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from ._addresses import format_address, local_key
from ._connections import ConnectionSet
from ._errors import ScopeClosed, WaitTimeout
from ._matching import Matcher
from ._other_clients import find
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, Rejection, Scope, check_timeout
from ._streams import Stream, StreamFactory, Waiting
from ._teardown import Closing
from ._tls import ThrowawayCA
from ._tracked import ALPN_FROM_FACTORY, Tracked, tracking_factory

if TYPE_CHECKING:
    from twisted.internet.protocol import Factory
    from typing_extensions import TypeVar

    # A bare ``ServingPort`` annotation means ``ServingPort[Any]``.
    _P = TypeVar("_P", default=Any)
else:
    from typing import TypeVar

    _P = TypeVar("_P")

#: The listen backlog of the default endpoint. Twisted's default of 50 drops
#: SYNs when hundreds of clients connect at once; each dropped SYN costs a
#: one-second retransmit.
DEFAULT_BACKLOG = 4096

#: Ports whose stopListening() always completes on the next reactor turn.
_BOUNDED_PORTS = (tcp.Port, unix.Port)


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


class _Stop:
    """A listening port's stop: started once, its outcome shared by all."""

    __slots__ = ("done", "result", "waiters")

    def __init__(self, port: IListeningPort) -> None:
        #: The outcome, once known: ``None``, or the ``Failure``.
        self.result: Failure | None = None
        self.waiters: list[Deferred[None]] | None = []
        #: Fires (with ``None``) when the port has stopped.
        self.done: Deferred[None] = maybeDeferred(port.stopListening).addBoth(
            self._stopped
        )

    def _stopped(self, result: object) -> None:
        if isinstance(result, Failure):
            self.result = result
        waiters, self.waiters = self.waiters, None
        for d in waiters or ():
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

    def outcome(self) -> Deferred[None]:
        """A new Deferred with the stop's outcome, now or when it is known."""
        if self.waiters is not None:
            d: Deferred[None] = Deferred()
            self.waiters.append(d)
            return d
        if self.result is not None:
            return fail(self.result)
        return succeed(None)


@implementer(IListeningPort)
class ServingPort(Generic[_P]):
    """
    The listening port of a :func:`serving` scope.

    It provides :class:`~twisted.internet.interfaces.IListeningPort`, and
    :func:`~cleanconn.connected` accepts it as a target. ``getHost()`` keeps
    answering after the port stopped (Twisted's raises). Its type parameter
    is the server-side protocol: :class:`~cleanconn.Stream` for a port
    serving streams.
    """

    def __init__(self, factory: IProtocolFactory, tls: ThrowawayCA | None) -> None:
        #: The factory given to :func:`serving`, the object itself (not
        #: modified; cleanconn wraps it only inside the listening port), or
        #: the :class:`~cleanconn.StreamFactory` it made when none was given.
        self.factory = factory
        #: The :class:`~cleanconn.ThrowawayCA` the port serves TLS with (the
        #: fresh one of ``tls=True``, or the one given as ``tls=``), else
        #: ``None``. It gives its trust to other clients: treq
        #: (:meth:`~cleanconn.ThrowawayCA.https_policy`), ``connectSSL``
        #: and ``wrapClientTLS``
        #: (:meth:`~cleanconn.ThrowawayCA.client_options`), or a client in
        #: another process (:meth:`~cleanconn.ThrowawayCA.write`).
        self.tls = tls
        #: ``False`` inside the :func:`serving` block and while its exit
        #: closes and waits; ``True`` once the exit has stopped the port,
        #: closed its connections and waited for them (whatever it then
        #: reported). :meth:`accept` then raises
        #: :class:`~cleanconn.ScopeClosed`.
        self.closed = False
        self._port: IListeningPort | None = None
        self._address: IAddress | None = None
        self._stop: _Stop | None = None
        self._matcher = Matcher()
        #: Server sides no accept() returned yet, in accept order; a stream
        #: stays after its connection is lost (its data is still to read).
        self._unaccepted: dict[Tracked, None] = {}
        #: The accept() calls waiting, once there was one.
        self._acceptors: deque[Deferred[Any]] | None = None
        self._reactor: Any = None
        self._conns = ConnectionSet(
            on_made=self._accepted,
            on_losing=self._losing,
            built_nothing=self._matcher.reject,
        )

    def __repr__(self) -> str:
        where = (
            "(not listening yet)"
            if self._address is None
            else format_address(self._address)
        )
        what = (
            "streams"
            if type(self.factory) is StreamFactory
            else type(self.factory).__qualname__
        )
        return f"<cleanconn.ServingPort {where} serving {what}>"

    # IListeningPort -----------------------------------------------------

    def startListening(self) -> None:
        """Listening starts when the scope is entered; this does nothing."""

    def stopListening(self) -> Deferred[None]:
        """
        Stop listening now; open connections stay open until the exit.

        Calling it inside the scope is allowed: the exit then waits for the
        same stop instead of stopping twice. An :meth:`accept` still waiting
        fails with :class:`~cleanconn.ScopeClosed`: no connection can come.
        """
        outcome = self._stopping().outcome()
        acceptors, self._acceptors = self._acceptors, None
        for waiter in acceptors or ():
            if not waiter.called:
                waiter.errback(ScopeClosed("serving()", "accept()", stopped=True))
        return outcome

    def getHost(self) -> IAddress:
        """The address the port is (or was) bound to."""
        assert self._address is not None
        return self._address

    # What a test asks about ---------------------------------------------

    def accept(self, *, timeout: float | None = None) -> Deferred[_P]:
        """
        The server side of the next connection this port accepts: a
        :class:`~cleanconn.Stream` on a port serving streams, else the
        protocol the factory built.

        .. code-block:: python

            async with serving() as port:
                request = treq.get(base_url(port))
                server = await port.accept()
                assert await server.readline() == b"GET / HTTP/1.1\\r\\n"

        Connections are returned in the order they were accepted, each
        once, whoever connected (:func:`~cleanconn.connected` or any other
        client), including those accepted before the call. A stream stays
        in line after its connection is lost (what it received is still to
        be read); a protocol of your factory leaves it then. It waits as
        long as it takes, unless given ``timeout=`` (then
        :class:`~cleanconn.WaitTimeout`) or cancelled.

        :raises ScopeClosed: the :func:`serving` block has ended (also for
            a call still waiting when it ends).
        """
        if self.closed:
            raise ScopeClosed("serving()", "accept()")
        unaccepted = self._unaccepted
        if unaccepted:
            conn = next(iter(unaccepted))
            del unaccepted[conn]
            found: _P = conn.wrapped  # type: ignore[assignment]
            return succeed(found)
        if self._stop is not None:
            raise ScopeClosed("serving()", "accept()", stopped=True)
        if timeout is not None:
            timeout = check_timeout(timeout, "ServingPort.accept()")
        acceptors = self._acceptors
        if acceptors is None:
            acceptors = self._acceptors = deque()

        def cancel(waiter: Deferred[Any]) -> None:
            if waiter in acceptors:
                acceptors.remove(waiter)

        def describe() -> str:
            return f"accept() on {self!r}: no connection accepted yet"

        waiter: Deferred[_P] = Waiting(cancel, describe)
        acceptors.append(waiter)
        if timeout is not None:
            reactor = self._reactor

            def expire() -> None:
                if waiter in acceptors:
                    acceptors.remove(waiter)
                    waiter.errback(WaitTimeout(f"accept() on {self!r}", timeout, None))

            timer = reactor.callLater(timeout, expire)
            waiter.addBoth(_cancel_timer, timer)
        return waiter

    @property
    def server_protocols(self) -> list[Any]:
        """The server-side protocols (the factory's own) still connected."""
        return [conn.wrapped for conn in self._conns.open]

    def server_protocol(self, client: object) -> Any:
        """
        The server-side protocol at the other end of ``client``.

        ``client`` is a protocol yielded by :func:`~cleanconn.connected` on
        this port: the answer then stays available after that scope ends,
        so a test can assert what the server saw once the client
        disconnected. For a client connected to this port otherwise (with
        an endpoint of its own), it is found by its address while it is
        connected: a TCP client, or a UNIX client bound to an address.
        """
        server = self._matcher.peer_of(client)
        if server is not None:
            return server
        # A connection made otherwise (the user's own endpoint): find the
        # server side by the client's address, while it is connected.
        transport = getattr(client, "transport", None)
        try:
            key = local_key(transport)
        except Exception:  # no transport, or its socket is closed
            key = None
        found = None if key is None else self._matcher.accepted_at(key)
        if found is None:
            raise LookupError(
                f"{client!r} has no server side on this port that cleanconn "
                "knows of: it was not connected with connected(port, ...), so "
                "it is found by its address, and none was found. That works "
                "for a TCP client still connected to this port; a UNIX "
                "client's socket has no address of its own unless it was "
                "bound to one (connected() binds it). See server_protocols "
                "for all."
            )
        return found.wrapped

    # For the serving() scope ------------------------------------------------

    def _accepted(self, conn: Tracked) -> None:
        """A server side ran ``connectionMade``."""
        self._matcher.accepted(conn)
        acceptors = self._acceptors
        while acceptors:
            waiter = acceptors.popleft()
            if not waiter.called:
                waiter.callback(conn.wrapped)
                return
        self._unaccepted[conn] = None

    def _losing(self, conn: Tracked) -> None:
        """A server side is being lost."""
        self._matcher.lost(conn)
        if self._unaccepted and type(self.factory) is not StreamFactory:
            self._unaccepted.pop(conn, None)

    def _stopping(self) -> _Stop:
        """The port's stop, started now if it was not already."""
        stop = self._stop
        if stop is None:
            assert self._port is not None
            stop = self._stop = _Stop(self._port)
        return stop


def _cancel_timer(result: object, timer: Any) -> object:
    if timer.active():
        timer.cancel()
    return result


def matcher_of(port: ServingPort[Any]) -> Matcher:
    """The matcher of a serving port, for the scopes that connect to it."""
    return port._matcher


def rejected_by(port: ServingPort[Any]) -> Rejection:
    """For :meth:`~cleanconn._scope.Scope.within`: the factory that built no
    protocol for a client's connection to ``port`` and what it raised."""

    def rejection(client: Tracked) -> tuple[object, BaseException | None] | None:
        rejected, error = port._matcher.rejection(client)
        return (port.factory, error) if rejected else None

    return rejection


class _Serving(Scope[ServingPort[Any]]):
    name = "serving()"

    def __init__(
        self,
        factory: IProtocolFactory | None,
        endpoint: object,
        interface: str | None,
        unix: bool | str,
        tls: bool | ThrowawayCA,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if factory is None:
            factory = StreamFactory()
        elif not IProtocolFactory.providedBy(factory):
            raise TypeError(not_a_factory("serving", factory))
        default_place = endpoint is None and interface is None and unix is False
        if not default_place or tls is not False:
            _check_where(endpoint, interface, unix, tls)
        super().__init__(reactor, timeout)
        self._place(endpoint, interface, unix)
        ca = ThrowawayCA() if tls is True else (tls or None)
        self._port: ServingPort[Any] = ServingPort(factory, ca)
        self._port._reactor = self.reactor

    def _place(self, endpoint: object, interface: str | None, unix: bool | str) -> None:
        """Where it listens (the port is made on entry)."""
        self._endpoint = endpoint
        self._interface = interface or "127.0.0.1"
        self._unix = unix
        self._tempdir: str | None = None

    def _enter(self) -> ServingPort[Any] | Deferred[ServingPort[Any]]:
        port = self._port
        factory: Any = tracking_factory(
            port.factory, port._conns, "server", port.tls is not None
        )
        if port.tls is not None:
            protocols: list[bytes] = []
            if not ALPN_FROM_FACTORY and IProtocolNegotiationFactory.providedBy(
                port.factory
            ):
                protocols = port.factory.acceptableProtocols()
            options = port.tls.server_options(acceptable_protocols=protocols)
            factory = _TLSServerFactory(options, False, factory)
        reactor: Any = self.reactor
        where = self._unix
        if where:
            if where is True:
                self._tempdir = _private_directory()
                where = os.path.join(self._tempdir, "socket")
            listening = reactor.listenUNIX(
                where, factory, backlog=DEFAULT_BACKLOG, mode=0o600
            )
        elif self._endpoint is None:
            listening = reactor.listenTCP(
                0, factory, backlog=DEFAULT_BACKLOG, interface=self._interface
            )
        else:
            endpoint = self._endpoint
            if isinstance(endpoint, str):
                endpoint = serverFromString(reactor, endpoint)  # type: ignore[no-untyped-call]
            assert IStreamServerEndpoint.providedBy(endpoint)
            return endpoint.listen(factory).addCallback(self._listening)
        return self._listening(listening)

    def _listening(self, listening: IListeningPort) -> ServingPort[Any]:
        port = self._port
        port._port = listening
        port._address = listening.getHost()
        return port

    def _close(self, closing: Closing) -> None:
        port = self._port
        if port._port is not None:
            stop = port._stopping()
            # Found before the server sides close: their client ends are
            # still on the reactor then.
            matcher = port._matcher
            foreign = (
                _foreign_clients(self.reactor, port)
                if port._conns.open or matcher._unclaimed or matcher._unkeyed
                else ()
            )
            closing.close(list(port._conns.open))
            for transport in foreign:
                closing.wait_for_foreign(transport)
            closing.wait_for(
                stop.done, port._address, type(port._port) in _BOUNDED_PORTS
            )

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        port = self._port
        port.closed = True
        if port._acceptors:
            acceptors, port._acceptors = port._acceptors, None
            for waiter in acceptors:
                if not waiter.called:
                    waiter.errback(ScopeClosed("serving()", "accept()"))
        if port._unaccepted:
            port._unaccepted.clear()
        # Drop what only a listening port needs: its Twisted port (whose
        # factory refers to the connections) and the matching state.
        port._port = None
        port._conns.release()
        port._matcher.clear()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        stop = port._stop
        if stop is not None and stop.result is not None:
            errors.append(stop.result.value or Exception(stop.result))
        return port._conns.to_report()


@overload
def serving(
    factory: None = None,
    endpoint: str | IStreamServerEndpoint | None = None,
    *,
    interface: str | None = None,
    unix: bool | str = False,
    tls: bool | ThrowawayCA = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[ServingPort[Stream]]: ...


@overload
def serving(
    factory: Factory[_P],  # type: ignore[type-var]
    endpoint: str | IStreamServerEndpoint | None = None,
    *,
    interface: str | None = None,
    unix: bool | str = False,
    tls: bool | ThrowawayCA = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[ServingPort[_P]]: ...


@overload
def serving(
    factory: IProtocolFactory,
    endpoint: str | IStreamServerEndpoint | None = None,
    *,
    interface: str | None = None,
    unix: bool | str = False,
    tls: bool | ThrowawayCA = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[ServingPort[Any]]: ...


def serving(
    factory: IProtocolFactory | None = None,
    endpoint: str | IStreamServerEndpoint | None = None,
    *,
    interface: str | None = None,
    unix: bool | str = False,
    tls: bool | ThrowawayCA = False,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[ServingPort[Any]]:
    """
    Listen with ``factory`` (or for streams) for the length of an
    ``async with`` block.

    .. code-block:: python

        async with serving(EchoFactory()) as port:
            ...  # port.getHost() is the real address

        async with serving() as port:  # no factory: streams
            server = await port.accept()  # a cleanconn.Stream

    The block gets a :class:`ServingPort`. When the block ends, for any
    reason, the port stops listening, every connection it accepted that is
    still open is closed (those made by :func:`connected` and any other), and
    the exit waits for ``stopListening`` and for each server-side
    ``connectionLost``. It also waits for the client end of each of those
    connections that other code in this process opened (treq's global pool,
    ``smtp.sendmail()``, a client made by the code under test), as it sees
    the server's close: one that does not close within ``timeout`` is
    reported by :class:`~cleanconn.CleanupTimeout`, never aborted (it is
    not cleanconn's). It finds them among the reactor's readers and
    writers: a client end that is on neither when the block ends (paused
    reading, or half-closeable and already past the server's close) is not
    waited for; :func:`~cleanconn.clean_reactor` and the pytest plugin
    report it if it stays open. Clients in other processes are out of its
    reach.

    :param factory: any ``IProtocolFactory``; it is not modified. ``None``
        (the default) serves :class:`~cleanconn.Stream`\\ s: take each
        connection with :meth:`ServingPort.accept`.
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


#: The longest UNIX socket path the system takes (108 bytes on Linux, 104 on
#: macOS and the BSDs, with the terminating NUL).
_MAX_SOCKET_PATH = 103


def _private_directory() -> str:
    """
    A new directory of mode 0700 for a UNIX socket: in the temporary
    directory, or in ``/tmp`` when the path of a socket in the temporary
    directory would be too long for the system (a deep ``TMPDIR``, such as
    the one nox and some CI systems give).
    """
    where = tempfile.mkdtemp(prefix="cleanconn-")
    if len(os.fsencode(os.path.join(where, "socket"))) <= _MAX_SOCKET_PATH:
        return where
    os.rmdir(where)
    return tempfile.mkdtemp(prefix="cleanconn-", dir="/tmp")


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
    if unix == "":
        raise ValueError(
            "serving(): unix='' is no socket path; give unix=True for a "
            "socket in a private temporary directory, or the path to listen on"
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


def not_a_factory(where: str, factory: object) -> str:
    message = (
        f"{where}() needs an IProtocolFactory (such as "
        f"twisted.internet.protocol.Factory), got {factory!r}."
    )
    if isinstance(factory, type) and IProtocol.implementedBy(factory):
        message += (
            f" That is a protocol class: pass Factory.forProtocol({factory.__name__})."
        )
    elif _is_datagram(factory):
        message += (
            " That is UDP (a DatagramProtocol), and UDP is not a stream "
            "transport: serving() and connected() listen and connect over "
            "TCP, UNIX sockets and TLS. Use cleanconn.datagrams() for it: "
            "`async with datagrams(protocol)` binds it on 127.0.0.1 for the block."
        )
    elif IProtocol.providedBy(factory):
        message += (
            " That is a protocol instance: pass a factory that builds one "
            "protocol per connection, e.g. Factory.forProtocol(cls)."
        )
    return message


def _is_datagram(thing: object) -> bool:
    from twisted.internet.protocol import AbstractDatagramProtocol

    cls = thing if isinstance(thing, type) else type(thing)
    return issubclass(cls, AbstractDatagramProtocol)


def _foreign_clients(reactor: Any, port: ServingPort[Any]) -> list[Any]:
    """The client ends other code in this process opened to ``port``,
    still open (see :func:`~cleanconn._other_clients.find`)."""
    keys, unkeyed = port._matcher.unclaimed()
    return find(
        reactor, port._address, {conn.key for conn in port._conns.open}, keys, unkeyed
    )
