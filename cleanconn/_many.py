"""``connected_many()``: many client connections to one port, as one scope."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IConnector, IProtocol, IProtocolFactory
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ._addresses import connect_to
from ._connected import StandIn
from ._connections import ConnectionSet
from ._errors import ConnectionRejected
from ._matching import Matcher, ticket
from ._reactor import CleanconnReactor
from ._scope import DEFAULT_TIMEOUT, Scope, local_of
from ._serving import ServingPort, matcher_of, not_a_factory
from ._teardown import Closing, raise_errors
from ._tracked import Tracked, tracking_factory

if TYPE_CHECKING:
    from twisted.internet.protocol import Factory

_P = TypeVar("_P", bound=Protocol)


class _ConnectedMany(Scope[list[Any]]):
    name = "connected_many()"

    def __init__(
        self,
        port: ServingPort,
        factory: IProtocolFactory,
        count: int,
        reactor: CleanconnReactor | None,
        timeout: float,
    ) -> None:
        if not isinstance(port, ServingPort):
            raise TypeError(
                "connected_many() needs a port yielded by cleanconn.serving(), "
                f"got {port!r}; for other servers, use connected() per client."
            )
        if port.tls is not None:
            raise TypeError(
                "connected_many() does not speak TLS; use connected() for each "
                "client of a TLS port."
            )
        if not IProtocolFactory.providedBy(factory):
            raise TypeError(not_a_factory("connected_many", factory))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                f"connected_many(): count must be a positive int, got {count!r}"
            )
        super().__init__(reactor, timeout)
        self._port: ServingPort | None = port
        self._factory = factory
        self._count = count
        self._conns = ConnectionSet(self._made_one, None, self._failed, self._stand_in)
        self._clients: list[Tracked] = []
        self._peers: list[Tracked] = []
        self._connectors: list[IConnector] = []
        self._pending = count
        self._made: Deferred[None] = Deferred()

    # What the connection set tells ----------------------------------------------

    def _made_one(self, conn: Tracked) -> None:
        self._clients.append(conn)
        self._pending -= 1
        if self._pending == 0 and not self._made.called:
            self._made.callback(None)

    def _failed(self, reason: Failure) -> None:
        if not self._made.called:
            self._made.errback(reason)

    def _stand_in(self, addr: Any, error: BaseException | None = None) -> StandIn:
        return StandIn(self._failed, self.name, self._factory)

    # Entering -------------------------------------------------------------------

    async def _enter(self) -> list[Any]:
        port = self._port
        assert port is not None, "entered once, released at exit"
        if port.closed:
            raise ValueError(
                f"connected_many(): {port!r} belongs to a serving() scope that "
                "has ended; connect inside the serving() block."
            )
        since = ticket()
        factory = tracking_factory(self._factory, self._conns, "client")
        address = port.getHost()
        reactor = self.reactor
        self._connectors = [
            connect_to(reactor, address, factory) for _ in range(self._count)
        ]
        await self.within(
            self._made,
            lambda: (
                f"all {self._count} clients connected "
                f"({self._count - self._pending} did)"
            ),
        )
        conns = self._clients
        raise_errors(conns)
        self._peers = await self._find_peers(matcher_of(port), conns, since)
        raise_errors(self._peers)
        return [conn.wrapped for conn in conns]

    async def _find_peers(
        self, matcher: Matcher, conns: list[Tracked], since: int
    ) -> list[Tracked]:
        found: list[Tracked | Deferred[Tracked]] = []
        claims: list[Deferred[Tracked]] = []
        for conn in conns:
            peer = matcher.claim(conn, since)
            if isinstance(peer, Deferred):
                conn.when_lost(_rejects(peer, conn))
                claims.append(peer)
            found.append(peer)
        if claims:
            try:
                await self.within(
                    gatherResults(claims, consumeErrors=True),
                    lambda: (
                        f"the server sides of "
                        f"{sum(not claim.called for claim in claims)} connection(s) "
                        "ran connectionMade"
                    ),
                )
            except BaseException as e:
                for conn, peer in zip(conns, found, strict=True):
                    if isinstance(peer, Deferred):
                        matcher.forget(conn, peer)
                        if not peer.called:
                            peer.cancel()
                if isinstance(e, FirstError):  # the first failure, as it was
                    e.subFailure.raiseException()
                raise
        # Every claim has fired by now: its result is the server side.
        peers: list[Tracked] = [
            each if isinstance(each, Tracked) else cast(Tracked, each.result)
            for each in found
        ]
        for conn, server in zip(conns, peers, strict=True):
            matcher.pair(conn, server)
        return peers

    # Exiting --------------------------------------------------------------------

    def _close(self, closing: Closing) -> None:
        for connector in self._connectors:
            if connector.state == "connecting":  # type: ignore[attr-defined]
                connector.stopConnecting()
        conns = self._conns
        if self._connectors and not self._peers:
            # The entry failed: connects that failed or were stopped finish
            # on Twisted's next turn (a zero-delay call each), and one may
            # be being made right now; wait for it.
            closing.settle(lambda: list(conns.open))
        closing.close([*conns.open, *self._peers])
        # Drop what refers back to this scope (each connection's wrapper
        # does), so that it is freed by reference counting.
        conns.release()
        self._connectors = []
        self._port = None

    def _closed(self, errors: list[BaseException]) -> list[Tracked]:
        report = [*self._clients, *self._peers]
        self._clients, self._peers = [], []
        return report


def _rejects(waiter: Deferred[Tracked], conn: Tracked) -> Any:
    def lost(_: Tracked) -> None:
        if not waiter.called:
            waiter.errback(
                ConnectionRejected(
                    "connected_many()",
                    local_of(conn),
                    "the server side ran connectionMade",
                )
            )

    return lost


@overload
def connected_many(
    port: ServingPort,
    factory: Factory[_P],
    count: int,
    *,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[list[_P]]: ...


@overload
def connected_many(
    port: ServingPort,
    factory: IProtocolFactory,
    count: int,
    *,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[list[IProtocol]]: ...


def connected_many(
    port: ServingPort,
    factory: IProtocolFactory,
    count: int,
    *,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> AbstractAsyncContextManager[list[Any]]:
    """
    Connect ``count`` clients to ``port`` at once, for one ``async with``.

    .. code-block:: python

        async with connected_many(port, Factory.forProtocol(Collector), 500) as clients:
            for client in clients:
                client.transport.write(b"hi")

    The block gets the ``count`` protocols ``factory`` built (in the order
    they connected), once every one of them, and the server side of every
    one, ran ``connectionMade``; ``port.server_protocol(client)`` works for
    each. At exit all of them are closed on both sides and waited for, as
    :func:`~cleanconn.connected` does for one, with one deadline for all:
    this is the cheap way to hold thousands of connections.

    If any connection fails, entering closes the others, waits for them,
    and raises the first failure (Twisted's error, or
    :class:`~cleanconn.ConnectTimeout` if they did not all connect within
    ``timeout``).

    :param port: a TCP or UNIX port yielded by :func:`~cleanconn.serving`
        (not a TLS one: use :func:`~cleanconn.connected` per client there).
    :param factory: any ``IProtocolFactory``; one factory builds them all.
    :param count: how many clients, at least one.
    :param reactor: the reactor to use; the global one by default.
    :param timeout: seconds the whole entry may take (connecting them all
        and the server sides appearing: one deadline for all), and then
        seconds for graceful closes at exit.
    :raises TypeError: ``port`` is not a plain serving port, or ``factory``
        is not a protocol factory.
    :raises ValueError: ``count`` or ``timeout`` is out of range.
    """
    return _ConnectedMany(port, factory, count, reactor, timeout)
