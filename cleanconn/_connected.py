"""``connected()``: one client connection for the length of a scope."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar, overload

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.error import ConnectingCancelledError, NoProtocol
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import log
from twisted.python.failure import Failure

from ._addresses import connect_to, tcp_target
from ._connections import ConnectionSet
from ._matching import ticket
from ._proxy import Proxy
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, Scope
from ._serving import ServingPort, matcher_of, not_a_factory, rejected_by
from ._streams import Stream, StreamFactory, Waiting
from ._teardown import Closing, raise_errors
from ._tracked import Tracked, tracking_factory

if TYPE_CHECKING:
    from twisted.internet.protocol import Factory

_P = TypeVar("_P", bound=Protocol)


class StandIn(Protocol):
    """Stands in when the user's factory built no protocol: once its
    connection is tracked (so it is closed and waited for), entry fails."""

    def __init__(self, failed: Any, scope: str, factory: object) -> None:
        self._fail = failed
        self._why = (
            f"{scope}: the client factory {factory!r} returned None from "
            "buildProtocol(), so the connection had no protocol; make it "
            "build one"
        )

    def connectionMade(self) -> None:
        self._fail(Failure(NoProtocol(self._why)))  # type: ignore[no-untyped-call]


class _Connected(Scope[Any]):
    name = "connected()"

    def __init__(
        self,
        target: object,
        factory: IProtocolFactory | None,
        tls: IOpenSSLClientConnectionCreator | None,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if factory is None:
            factory = StreamFactory()
        elif not IProtocolFactory.providedBy(factory):
            raise TypeError(not_a_factory("connected", factory))
        if type(target) is Proxy:
            target = target.port
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
        super().__init__(reactor, timeout)
        #: The target as given, for messages.
        self._given: object = target
        if isinstance(target, str):
            target = _parse_endpoint(self.reactor, target)
        self._target: object = target
        self._factory = factory
        #: Whether the exit waits a turn for a connect attempt to be gone.
        self._settle = False
        if tls is None and isinstance(target, ServingPort) and target.tls:
            address = target.getHost()
            hostname = (
                "localhost"
                if isinstance(address, UNIXAddress)
                else tcp_target(address, self.name)[0]
            )
            tls = target.tls.client_options(hostname)
        self._tls = tls
        self._conns = ConnectionSet(self._made_one, None, self._failed, self._stand_in)
        self._peer: Tracked | None = None
        self._connector: IConnector | None = None
        self._made: Deferred[Tracked] | None = Waiting(
            self._cancel_connect, self._connecting
        )

    # What the connection set tells ----------------------------------------------

    def _made_one(self, conn: Tracked) -> None:
        made = self._made
        if made is not None and not made.called:
            made.callback(conn)

    def _failed(self, reason: Failure) -> None:
        made = self._made
        if made is not None and not made.called:
            made.errback(reason)

    def _stand_in(
        self, addr: IAddress, error: BaseException | None = None
    ) -> IProtocol:
        return StandIn(self._failed, self.name, self._factory)

    # Entering -----------------------------------------------------------------

    async def _enter(self) -> Any:
        target = self._target
        if type(target) is ServingPort:
            # within(), without its coroutine: the hot path of every entry.
            made = self._connect_to_port(target)
            self.until_deadline(made.cancel)
            try:
                conn = await made
            except Exception as e:
                if self._expired:
                    where = _describe_target(self._given)
                    raise self.timed_out(f"the connection to {where} was made") from e
                raise
            finally:
                self._on_expire = None
        else:
            conn = await self._connect_endpoint(target)
        if conn.errors:
            raise_errors([conn])
        if type(target) is not ServingPort:
            if self._tls is not None:
                await self._handshake(conn, "the client's TLS handshake completed")
            return conn.wrapped
        matcher = matcher_of(target)
        if self._tls is not None:
            rejected = rejected_by(target)

            def what() -> str:
                return "the client's TLS handshake completed" + _paused_server(
                    self.reactor, matcher, conn
                )

            await self._handshake(conn, what, rejected)
        found = matcher.claim(conn, self._ticket)
        if not isinstance(found, Tracked):  # a Deferred (an ABC: slower to test)
            claim = found
            try:
                found = await self.within(
                    claim,
                    "the server side ran connectionMade",
                    conn,
                    rejected_by(target),
                )
            except BaseException:
                matcher.forget(conn, claim)
                raise
        self._peer = found
        matcher.pair(conn, found)
        if found.errors:
            raise_errors([found])
        if self._tls is not None:
            await self._handshake(found, "the server's TLS handshake completed")
        return conn.wrapped

    def _connect_to_port(self, target: ServingPort) -> Deferred[Tracked]:
        """Start connecting to a serving() port; the Deferred fires with the
        connection once it is made (cancelling it stops the connect)."""
        if target.closed:
            raise ValueError(
                f"connected(): {target!r} belongs to a serving() scope "
                "that has ended; connect inside the serving() block."
            )
        factory: Any = tracking_factory(
            self._factory, self._conns, "client", self._tls is not None
        )
        if self._tls is not None:
            factory = TLSMemoryBIOFactory(self._tls, True, factory)
        self._ticket = ticket()
        self._connector = connect_to(self.reactor, target.getHost(), factory)
        assert self._made is not None
        return self._made

    async def _connect_endpoint(self, target: Any) -> Tracked:
        """Connect with a client endpoint (or endpoint string), bounded."""
        factory = tracking_factory(
            self._factory, self._conns, "client", self._tls is not None
        )
        if self._tls is not None:
            target = wrapClientTLS(self._tls, target)
        given = self._given

        def what() -> str:
            return f"the connection to {_describe_target(given)} was made"

        connecting = target.connect(factory)
        # The connection's own makeConnection says that it is made, even when
        # the user's connectionMade raised: an endpoint's Deferred then never
        # fires (Twisted's wrapper fires it after connectionMade returns).
        ready: Deferred[Tracked] = Deferred(lambda _: connecting.cancel())
        assert self._made is not None
        self._made.addCallback(lambda conn: _fire(ready, conn))
        connecting.addErrback(lambda reason: _fail(ready, reason))
        try:
            conn = await self.within(ready, what)
        except BaseException:
            # An endpoint's canceller fails the connect before its connector
            # stopped: the exit waits the turn it takes to be gone.
            self._settle = True
            raise
        assert isinstance(conn, Tracked)
        return conn

    async def _handshake(
        self, conn: Tracked, what: str | Callable[[], str], rejected: Any = None
    ) -> None:
        """Wait, within the entry's deadline, for ``conn``'s TLS handshake."""
        if conn.handshaken:
            return
        done: Deferred[Tracked] = Deferred()
        conn.when_handshake(lambda c: _fire(done, c))
        await self.within(done, what, conn, rejected)

    def _connecting(self) -> str:
        """What the entry waits for while it connects (as a deadline that
        fires then names it)."""
        where = _describe_target(self._given)
        return f"{self.name} entering, waiting until the connection to {where} was made"

    def _cancel_connect(self, made: Deferred[Tracked]) -> None:
        # Stop first: failing ``made`` runs the entry's failure and the
        # exit at once, which must find the connect gone. What stopping
        # it fails ``made`` with is not the outcome: the cancel is.
        connector = self._connector
        assert connector is not None
        if connector.state == "connecting":  # type: ignore[attr-defined]
            self._made = None
            try:
                connector.stopConnecting()
            except Exception:  # the user's doStop()/stopFactory() raised
                log.err(None, "connected(): stopping the cancelled connect")  # type: ignore[no-untyped-call]
            finally:
                self._made = made
        # Cancelled in its first turn, Twisted's zero-delay connect call is
        # still pending; or the connection is being made right now (the
        # user's buildProtocol or connectionMade is on the stack): the exit
        # waits a turn for either.
        self._settle = True
        made.errback(ConnectingCancelledError(connector.getDestination()))  # type: ignore[no-untyped-call]

    # Exiting ------------------------------------------------------------------

    def _close(self, closing: Closing) -> None:
        conns = self._conns
        peer = self._peer
        closing.close([*conns.open, peer] if peer is not None else list(conns.open))
        if self._settle:
            closing.settle(lambda: list(conns.open))
        # Drop what refers back to this scope, so that it is freed by
        # reference counting rather than by the cycle collector.
        conns.release()
        self._made = self._connector = self._target = self._given = None

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        report = self._conns.to_report()
        peer, self._peer = self._peer, None
        if peer is not None:
            report.append(peer)
        return report


@overload
def connected(
    target: ServingPort[Any] | Proxy | IStreamClientEndpoint | str,
    factory: None = None,
    *,
    tls: IOpenSSLClientConnectionCreator | None = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[Stream]: ...


@overload
def connected(
    target: ServingPort[Any] | Proxy | IStreamClientEndpoint | str,
    factory: Factory[_P],
    *,
    tls: IOpenSSLClientConnectionCreator | None = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[_P]: ...


@overload
def connected(
    target: ServingPort[Any] | Proxy | IStreamClientEndpoint | str,
    factory: IProtocolFactory,
    *,
    tls: IOpenSSLClientConnectionCreator | None = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[IProtocol]: ...


def connected(
    target: ServingPort[Any] | Proxy | IStreamClientEndpoint | str,
    factory: IProtocolFactory | None = None,
    *,
    tls: IOpenSSLClientConnectionCreator | None = None,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[Any]:
    """
    Connect with ``factory`` (or as a stream) for the length of an
    ``async with`` block.

    .. code-block:: python

        async with connected(port) as stream:  # no factory: a Stream
            stream.write(b"hi\\n")
            reply = await stream.readline()

        async with connected(port, ClientFactory.forProtocol(Echo)) as proto:
            proto.transport.write(b"hi")

    The block gets the protocol instance ``factory`` built (not a wrapper),
    or with no factory a :class:`~cleanconn.Stream`, once its
    ``connectionMade`` has run. When ``target`` is a
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
    :param factory: any ``IProtocolFactory``; ``None`` (the default) for
        a :class:`~cleanconn.Stream`.
    :param tls: client TLS options (an ``IOpenSSLClientConnectionCreator``)
        to speak TLS with. For a TLS :func:`serving` port the default trusts
        exactly that port's :class:`~cleanconn.ThrowawayCA`, with
        verification on. With TLS the block starts only once the handshake
        completed on both sides; a failed verification raises from entering.
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds the whole entry may take (connecting, both TLS
        handshakes, the server side's ``connectionMade``: one deadline for
        all), and then seconds for graceful closes at exit; what is still
        open then is aborted, waited for, and reported by
        :class:`~cleanconn.CleanupTimeout`.
    :raises TypeError: ``target`` or ``factory`` is of the wrong kind.
    :raises ValueError: ``timeout`` is not a positive, finite number.

    If the connection cannot be made, entering raises Twisted's own error
    (``ConnectionRefusedError``, ``DNSLookupError``, ...), the block does not
    run, and nothing is left on the reactor.
    """
    return _Connected(target, factory, tls, reactor, timeout)


def _parse_endpoint(reactor: Any, description: str) -> IStreamClientEndpoint:
    """A client endpoint string, parsed; a plain ``host:port`` is told how."""
    try:
        endpoint: IStreamClientEndpoint = clientFromString(reactor, description)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, KeyError) as e:
        hint = ""
        host, _, port = description.rpartition(":")
        if port.isdigit() and host and ":" not in host.strip("[]").rstrip(":"):
            hint = f" For TCP, write 'tcp:{host}:{port}'."
        elif port.isdigit() and host.startswith("["):
            escaped = host.strip("[]").replace(":", "\\:")
            hint = f" For TCP over IPv6, write 'tcp:{escaped}:{port}'."
        raise ValueError(
            f"connected(): {description!r} is not a client endpoint string "
            f"({e}).{hint} Endpoint strings name their kind first, such as "
            "'tcp:127.0.0.1:8080' or 'unix:/path/to/socket'."
        ) from None
    return endpoint


def _describe_target(target: object) -> str:
    """A target as a message names it: the endpoint string or address."""
    if isinstance(target, str):
        return repr(target)
    if isinstance(target, ServingPort):
        return repr(target)
    host = getattr(target, "_host", None) or getattr(target, "_hostText", None)
    port = getattr(target, "_port", None)
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    kind = type(target).__name__
    if host is not None and port is not None:
        return f"{kind} to {host}:{port}"
    path = getattr(target, "_path", None)
    if path is not None:
        return f"{kind} to {path!r}"
    return repr(target)


def _paused_server(reactor: Any, matcher: Any, client: Tracked) -> str:
    """
    Why a TLS handshake never completed, when it can be seen: the server
    side paused reading (in ``connectionMade``, say), so it never answers.
    """
    server = matcher.accepted_at(client.key)
    readers = getattr(reactor, "getReaders", None)
    if server is None or readers is None:
        return ""
    tcp = getattr(server.transport, "transport", server.transport)
    if tcp is None or getattr(tcp, "disconnected", False) or tcp in readers():
        return ""
    return (
        ": the server side paused reading (pauseProducing() or stopReading(), "
        "in connectionMade?), so it can never answer the handshake. Pause "
        "it only after handshakeCompleted(), or resume it"
    )


def _fire(d: Deferred[Tracked], conn: Tracked) -> None:
    if not d.called:
        d.callback(conn)


def _fail(d: Deferred[Tracked], reason: Failure) -> None:
    if not d.called:
        d.errback(reason)


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
