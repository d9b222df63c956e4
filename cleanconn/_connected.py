"""``connected()``: one client connection for the length of a scope."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from ._errors import ConnectionRejected, ConnectTimeout
from ._serving import DEFAULT_TIMEOUT, ServingPort, _not_a_factory, address_key
from ._tracking import Tracked, close_and_wait, finish, take_errors, track
from ._types import CleanconnReactor, check_timeout, default_reactor

if TYPE_CHECKING:
    from twisted.internet.protocol import Factory

_P = TypeVar("_P")


class _ClientFactory(ClientFactory):
    """Builds and wraps the user's protocol; reports a failed connect."""

    noisy = False

    def __init__(self, factory: IProtocolFactory, scope: _Connected[Any]) -> None:
        self._factory = factory
        self._scope = scope

    def buildProtocol(self, addr: IAddress) -> Tracked | None:  # type: ignore[override]
        proto = self._factory.buildProtocol(addr)
        if proto is None:
            return None
        return track(proto, "client", self._scope)

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        made = self._scope._made
        if not made.called:
            made.errback(reason)


class _Connected(Generic[_P]):
    def __init__(
        self,
        target: object,
        factory: IProtocolFactory,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if not IProtocolFactory.providedBy(factory):
            raise TypeError(_not_a_factory("connected", factory))
        if not (
            isinstance(target, (ServingPort, str))
            or IStreamClientEndpoint.providedBy(target)
        ):
            raise TypeError(_bad_target(target))
        self._timeout = check_timeout(timeout, "connected()")
        self._target = target
        self._factory = factory
        self._reactor = default_reactor(reactor)
        self._conn: Tracked | None = None
        self._peer: Tracked | None = None
        self._connector: IConnector | None = None
        self._made: Deferred[Tracked] = Deferred(self._cancel_connect)
        self._entered = False

    # Owner ------------------------------------------------------------------

    def conn_opened(self, conn: Tracked) -> None:
        self._conn = conn

    def conn_made(self, conn: Tracked) -> None:
        if not self._made.called:
            self._made.callback(conn)

    def conn_lost(self, conn: Tracked) -> None:
        pass

    # Connecting ---------------------------------------------------------------

    def _cancel_connect(self, made: Deferred[Tracked]) -> None:
        connector = self._connector
        assert connector is not None
        made.errback(ConnectingCancelledError(connector.getDestination()))  # type: ignore[no-untyped-call]
        connector.stopConnecting()

    async def _connect(self) -> Tracked:
        target = self._target
        factory = _ClientFactory(self._factory, self)
        if isinstance(target, ServingPort):
            if target.closed:
                raise ValueError(
                    f"connected(): {target!r} belongs to a serving() scope "
                    "that has ended; connect inside the serving() block."
                )
            host, port = _client_address(target.getHost())
            self._connector = self._reactor.connectTCP(
                host, port, factory, timeout=self._timeout or 30
            )
            return await self._made
        if isinstance(target, str):
            target = clientFromString(self._reactor, target)  # type: ignore[no-untyped-call]
        conn = await target.connect(factory)
        assert isinstance(conn, Tracked)
        return conn

    async def _find_peer(self, port: ServingPort, conn: Tracked) -> Tracked:
        found = port._claim(conn)
        if isinstance(found, Tracked):
            return found
        address = conn.transport.getHost()

        def client_lost(_: object) -> None:
            if found.called:
                return
            if address_key(address) in port._rejected:
                found.errback(
                    ConnectionRejected(
                        f"connected(): the server closed the connection from "
                        f"{address} at once: the serving() factory "
                        f"{port.factory!r} returned None from buildProtocol().",
                        address,
                    )
                )
            else:
                found.errback(
                    ConnectionRejected(
                        f"connected(): the connection from {address} was lost "
                        "before the server side ran connectionMade.",
                        address,
                    )
                )

        def expire() -> None:
            if not found.called:
                found.errback(
                    ConnectTimeout(
                        f"connected(): the server side of {address} did not "
                        f"run connectionMade within timeout={self._timeout}s.",
                        self._timeout,
                    )
                )

        conn.when_lost(client_lost)
        timer = self._reactor.callLater(self._timeout, expire)
        try:
            return await found
        finally:
            if timer.active():
                timer.cancel()

    async def __aenter__(self) -> _P:
        if self._entered:
            raise RuntimeError(
                "this connected() scope was already entered; call connected() "
                "again for a new connection"
            )
        self._entered = True
        conn = None
        try:
            conn = await self._connect()
            port = self._target
            if isinstance(port, ServingPort):
                self._peer = await self._find_peer(port, conn)
                port._remember_peer(conn, self._peer)
                if self._peer.errors:
                    error = take_errors([self._peer])
                    assert error is not None
                    raise error
        except BaseException as e:
            conns = [c for c in (self._conn, self._peer) if c is not None]
            errors: list[BaseException] = []
            try:
                await close_and_wait(self._reactor, "connected()", conns, self._timeout)
            except BaseException as cleanup:
                errors.append(cleanup)
            finish(e, errors)
            raise
        wrapped: _P = conn.wrapped  # type: ignore[assignment]
        return wrapped

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conns = [c for c in (self._conn, self._peer) if c is not None]
        errors: list[BaseException] = []
        try:
            await close_and_wait(self._reactor, "connected()", conns, self._timeout)
        except BaseException as e:
            errors.append(e)
        protocol_error = take_errors(conns)
        if protocol_error is not None:
            errors.append(protocol_error)
        finish(exc, errors)


@overload
def connected(
    target: ServingPort | IStreamClientEndpoint | str,
    factory: Factory[_P],  # type: ignore[type-var]
    *,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _Connected[_P]: ...


@overload
def connected(
    target: ServingPort | IStreamClientEndpoint | str,
    factory: IProtocolFactory,
    *,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _Connected[IProtocol]: ...


def connected(
    target: ServingPort | IStreamClientEndpoint | str,
    factory: IProtocolFactory,
    *,
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
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds to wait for the server side to appear, and for
        graceful closes at exit; what is still open then is aborted,
        waited for, and reported by :class:`~cleanconn.CleanupTimeout`.
    :raises TypeError: ``target`` or ``factory`` is of the wrong kind.
    :raises ValueError: ``timeout`` is negative.

    If the connection cannot be made, entering raises Twisted's own error
    (``ConnectionRefusedError``, ``DNSLookupError``, ...), the block does not
    run, and nothing is left on the reactor.
    """
    return _Connected(target, factory, reactor, timeout)


def _client_address(address: IAddress) -> tuple[str, int]:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        raise TypeError(
            f"connected(): cannot derive a client endpoint from the address "
            f"{address!r}; pass a client endpoint (an IStreamClientEndpoint "
            "or a client endpoint string) for this server instead."
        )
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, port


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
