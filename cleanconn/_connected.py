"""``connected()``: one client connection for the length of a scope."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from typing import Protocol as TypingProtocol

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionDone,
    NoProtocol,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from ._errors import ConnectionRejected, ConnectTimeout
from ._serving import (
    DEFAULT_TIMEOUT,
    ServingPort,
    _not_a_factory,
    client_key,
    reachable_host,
)
from ._tracking import (
    ForwardingFactory,
    Owner,
    Tracked,
    close_and_wait,
    raise_errors,
    sequence,
    track,
)
from ._types import CleanconnReactor, check_timeout, default_reactor, enter_once

if TYPE_CHECKING:
    from twisted.internet.protocol import Factory

_P = TypeVar("_P")


class _ClientScope(Owner, TypingProtocol):
    """A scope that owns client connections and hears of failed ones."""

    def _failed(self, reason: Failure) -> None:
        """A connection could not be made: ``reason`` says why."""


class _NoProtocol(Protocol):
    """Stands in when the user's factory built no protocol."""

    def __init__(self, scope: _ClientScope) -> None:
        self._scope = scope

    def connectionMade(self) -> None:
        self._scope._failed(Failure(NoProtocol()))  # type: ignore[no-untyped-call]


class _ClientFactory(ForwardingFactory, ClientFactory):
    """Builds and wraps the user's protocol; reports a failed connect."""

    noisy = False

    def __init__(
        self, factory: IProtocolFactory, scope: _ClientScope, tls: bool
    ) -> None:
        self._factory = factory
        self._scope = scope
        self._tls = tls
        self._seq = next(sequence)

    def buildProtocol(self, addr: IAddress) -> Tracked:  # type: ignore[override]
        proto = self._factory.buildProtocol(addr)
        if proto is None:
            # A stand-in fails entry once its connection is tracked, so that
            # the connection Twisted already made is closed and waited for.
            proto = _NoProtocol(self._scope)
        conn = track(proto, "client", self._scope, self._tls)
        conn.seq = self._seq
        return conn

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._scope._failed(reason)

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        # The connector and its transport refer to each other; a connector is
        # never reconnected here, so drop the link (as Twisted does when a
        # connect fails) and both are freed by reference counting.
        try:  # noqa: SIM105 - cheaper than suppress() on the hot path
            connector.transport = None  # type: ignore[attr-defined]
        except AttributeError:  # a connector of another kind
            pass


class _Connected(Generic[_P]):
    def __init__(
        self,
        target: object,
        factory: IProtocolFactory,
        tls: Any,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if not IProtocolFactory.providedBy(factory):
            raise TypeError(_not_a_factory("connected", factory))
        if not (
            type(target) is ServingPort
            or isinstance(target, str)
            or IStreamClientEndpoint.providedBy(target)
        ):
            raise TypeError(_bad_target(target))
        if tls is not None and not IOpenSSLClientConnectionCreator.providedBy(tls):
            raise TypeError(
                "connected(): tls must be client TLS options (an "
                "IOpenSSLClientConnectionCreator such as optionsForClientTLS(...) "
                f"or ThrowawayCA.client_options()), got {tls!r}"
            )
        self._timeout = check_timeout(timeout, "connected()")
        self._target: object = target
        self._factory = factory
        if tls is None and isinstance(target, ServingPort) and target.tls:
            address = target.getHost()
            hostname = (
                "localhost"
                if isinstance(address, UNIXAddress)
                else _client_address(address)[0]
            )
            tls = target.tls.client_options(hostname)
        self._tls = tls
        self._reactor = default_reactor(reactor)
        self._conn: Tracked | None = None
        self._peer: Tracked | None = None
        self._connector: IConnector | None = None
        self._made: Deferred[Tracked] | None = Deferred(self._cancel_connect)
        self._entered = False

    # Owner ------------------------------------------------------------------

    def conn_opened(self, conn: Tracked) -> None:
        self._conn = conn

    def conn_made(self, conn: Tracked) -> None:
        made = self._made
        if made is not None and not made.called:
            made.callback(conn)

    def conn_lost(self, conn: Tracked) -> None:
        pass

    def _failed(self, reason: Failure) -> None:
        made = self._made
        if made is not None and not made.called:
            made.errback(reason)

    def _release(self) -> list[Tracked]:
        """
        The scope is over: drop what refers back to it, so that it is freed
        by reference counting rather than by the cycle collector.
        """
        conns = [c for c in (self._conn, self._peer) if c is not None]
        self._conn = self._peer = self._made = self._connector = None
        self._target = None
        return conns

    # Connecting ---------------------------------------------------------------

    def _cancel_connect(self, made: Deferred[Tracked]) -> None:
        connector = self._connector
        assert connector is not None
        made.errback(ConnectingCancelledError(connector.getDestination()))  # type: ignore[no-untyped-call]
        connector.stopConnecting()

    def _connect_to_port(self, target: ServingPort) -> None:
        """Start connecting to a serving() port; ``_made`` fires when done."""
        if target.closed:
            raise ValueError(
                f"connected(): {target!r} belongs to a serving() scope "
                "that has ended; connect inside the serving() block."
            )
        factory: Any = _ClientFactory(self._factory, self, self._tls is not None)
        if self._tls is not None:
            factory = TLSMemoryBIOFactory(self._tls, True, factory)
        self._connector = connect_to(
            self._reactor, target.getHost(), factory, self._timeout
        )

    async def _connect_endpoint(self, target: Any) -> Tracked:
        """Connect with a client endpoint (or endpoint string), bounded."""
        factory = _ClientFactory(self._factory, self, self._tls is not None)
        if isinstance(target, str):
            target = clientFromString(self._reactor, target)  # type: ignore[no-untyped-call]
        if self._tls is not None:
            target = wrapClientTLS(self._tls, target)
        connecting = target.connect(factory)
        expired = []

        def expire() -> None:
            expired.append(True)
            connecting.cancel()

        timer = self._reactor.callLater(self._timeout, expire)
        try:
            conn = await connecting
        except Exception as e:
            if expired:
                raise self._connect_timeout(target) from e
            raise
        finally:
            if timer.active():
                timer.cancel()
        assert isinstance(conn, Tracked)
        return conn

    def _connect_timeout(self, target: object) -> ConnectTimeout:
        return ConnectTimeout(
            f"connected(): could not connect to {target!r} within "
            f"timeout={self._timeout}s. Is the server accepting connections? "
            "Raise timeout= if connecting is merely slow.",
            self._timeout,
        )

    async def _until(
        self,
        conn: Tracked,
        ready: Deferred[Tracked] | None,
        what: str,
        port: ServingPort | None = None,
    ) -> Tracked:
        """
        Wait for ``ready``, failing if ``conn`` is lost first or ``timeout``
        passes. Without ``ready``, wait for ``conn``'s TLS handshake. A loss
        that ``port``'s factory caused by building no protocol says so.
        """
        if ready is None:
            if conn.handshaken:
                return conn
            ready = Deferred()
            conn.when_handshake(lambda c: _fire(waiting, c))
        waiting: Deferred[Tracked] = ready
        local = conn.report().local  # while the connection still has it

        def lost(lost_conn: Tracked) -> None:
            if waiting.called:
                return
            reason = lost_conn.reason
            rejection = None if port is None else _rejection(port, lost_conn)
            unclean = reason is not None and not reason.check(ConnectionDone)  # type: ignore[no-untyped-call]
            if rejection is None and unclean:
                waiting.errback(reason)
                return
            waiting.errback(
                ConnectionRejected(
                    f"connected(): the connection from {local} "
                    f"was closed before {rejection or what}.",
                    local,
                )
            )

        def expire() -> None:
            if not waiting.called:
                waiting.errback(
                    ConnectTimeout(
                        f"connected(): gave up after timeout={self._timeout}s "
                        f"waiting until {what} (connection from {local}). "
                        "Raise timeout= if the server is merely slow.",
                        self._timeout,
                    )
                )

        conn.when_lost(lost)
        timer = self._reactor.callLater(self._timeout, expire)
        try:
            return await waiting
        finally:
            if timer.active():
                timer.cancel()
            conn.forget_lost(lost)  # not kept for the life of the connection

    async def _wait_for_peer(
        self, port: ServingPort, conn: Tracked, found: Deferred[Tracked]
    ) -> Tracked:
        """Wait, bounded, for the server side ``port._claim()`` promised."""
        what = "the server side ran connectionMade"
        try:
            return await self._until(conn, found, what, port)
        except BaseException:
            port._forget_claim(conn, found)
            raise

    async def __aenter__(self) -> _P:
        enter_once(self._entered, "connected()")
        self._entered = True
        target = self._target
        try:
            if isinstance(target, ServingPort):
                self._connect_to_port(target)
                assert self._made is not None
                try:
                    conn = await self._made
                except TimeoutError as e:  # Twisted's connector gave up
                    raise self._connect_timeout(target) from e
            else:
                conn = await self._connect_endpoint(target)
            if conn.errors:
                raise_errors([conn])
            if self._tls is not None:
                port = None
                if isinstance(target, ServingPort):
                    port = target
                    conn.key = client_key(conn)  # while its socket is open
                what = "the client's TLS handshake completed"
                await self._until(conn, None, what, port)
            if isinstance(target, ServingPort):
                found = target._claim(conn)
                if isinstance(found, Deferred):
                    found = await self._wait_for_peer(target, conn, found)
                self._peer = found
                target._remember_peer(conn, found)
                if found.errors:
                    raise_errors([found])
                if self._tls is not None:
                    await self._until(
                        found, None, "the server's TLS handshake completed"
                    )
        except BaseException as e:
            conns = self._release()
            await close_and_wait(
                self._reactor, "connected()", conns, self._timeout, body=e
            )
            raise
        wrapped: _P = conn.wrapped  # type: ignore[assignment]
        return wrapped

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conns = self._release()
        await close_and_wait(
            self._reactor, "connected()", conns, self._timeout, body=exc, report=conns
        )


@overload
def connected(
    target: ServingPort | IStreamClientEndpoint | str,
    factory: Factory[_P],  # type: ignore[type-var]
    *,
    tls: Any = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _Connected[_P]: ...


@overload
def connected(
    target: ServingPort | IStreamClientEndpoint | str,
    factory: IProtocolFactory,
    *,
    tls: Any = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _Connected[IProtocol]: ...


def connected(
    target: ServingPort | IStreamClientEndpoint | str,
    factory: IProtocolFactory,
    *,
    tls: Any = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _Connected[Any]:
    """
    Connect with ``factory`` for the length of an ``async with`` block.

    .. code-block:: python

        async with connected(port, ClientFactory.forProtocol(Echo)) as proto:
            proto.transport.write(b"hi")

    The block gets the protocol instance ``factory`` built (not a wrapper),
    once its ``connectionMade`` has run. When ``target`` is a
    :class:`~cleanconn.ServingPort`, the block also starts only after the
    server side of this connection ran ``connectionMade``, and
    ``port.server_protocol(proto)`` returns that server-side protocol.

    When the block ends, for any reason, the connection is closed (on both
    sides when the server is a :func:`serving` port) and the exit waits for
    the client's ``connectionLost`` and the server peer's.

    Only ``buildProtocol``, ``doStart`` and ``doStop`` of ``factory`` are
    used, as with Twisted's endpoints: a ``ReconnectingClientFactory``
    will not reconnect.

    :param target: a port yielded by :func:`serving`, an
        ``IStreamClientEndpoint``, or a client endpoint string such as
        ``"tcp:127.0.0.1:8080"``.
    :param factory: any ``IProtocolFactory``.
    :param tls: client TLS options (an ``IOpenSSLClientConnectionCreator``)
        to speak TLS with. For a TLS :func:`serving` port the default trusts
        exactly that port's :class:`~cleanconn.ThrowawayCA`, with
        verification on. With TLS the block starts only once the handshake
        completed on both sides; a failed verification raises from entering.
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds to wait for the server side to appear, and for
        graceful closes at exit; what is still open then is aborted,
        waited for, and reported by :class:`~cleanconn.CleanupTimeout`.
    :raises TypeError: ``target`` or ``factory`` is of the wrong kind.
    :raises ValueError: ``timeout`` is not a positive, finite number.

    If the connection cannot be made, entering raises Twisted's own error
    (``ConnectionRefusedError``, ``DNSLookupError``, ...), the block does not
    run, and nothing is left on the reactor.
    """
    return _Connected(target, factory, tls, reactor, timeout)


def connect_to(
    reactor: Any, address: IAddress, factory: Any, timeout: float
) -> IConnector:
    """Start connecting to a serving port's ``address`` (TCP or UNIX)."""
    if type(address) is not IPv4Address and isinstance(address, UNIXAddress):
        connector: IConnector = reactor.connectUNIX(
            address.name, factory, timeout=timeout
        )
        _autobind(connector)
        return connector
    host, port = _client_address(address)
    tcp_connector: IConnector = reactor.connectTCP(host, port, factory, timeout=timeout)
    return tcp_connector


def _autobind(connector: Any) -> None:
    """
    Bind a UNIX client socket to a unique abstract name (Linux autobind)
    before it connects, so the server side can be matched by address.
    Elsewhere the connection is matched in accept order instead.
    """
    with contextlib.suppress(AttributeError, OSError):  # not Linux
        connector.transport.socket.bind("")


def _rejection(port: ServingPort, conn: Tracked) -> str | None:
    """What to say when the serving() factory built no protocol for ``conn``."""
    if conn.key is None or conn.key not in port._rejected:
        return None
    return (
        "the server built a protocol for it: the serving() factory "
        f"{port.factory!r} returned None from buildProtocol()"
    )


def _fire(d: Deferred[Tracked], conn: Tracked) -> None:
    if not d.called:
        d.callback(conn)


def _client_address(address: IAddress) -> tuple[str, int]:
    if type(address) is IPv4Address:
        return reachable_host(address.host), address.port
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        raise TypeError(
            f"connected(): cannot derive a client endpoint from the address "
            f"{address!r}; pass a client endpoint (an IStreamClientEndpoint "
            "or a client endpoint string) for this server instead."
        )
    return reachable_host(host), port


def _bad_target(target: object) -> str:
    message = (
        "connected() needs a port yielded by cleanconn.serving(), an "
        "IStreamClientEndpoint, or a client endpoint string such as "
        f"'tcp:127.0.0.1:8080'; got {target!r}."
    )
    if IListeningPort.providedBy(target):
        message += (
            " That listening port was not made by serving(): serve with "
            "cleanconn.serving(), or pass a client endpoint for its address."
        )
    return message
