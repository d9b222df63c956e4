"""``connected_many()``: many client connections to one port, as one scope."""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IConnector, IProtocolFactory
from twisted.python.failure import Failure

from ._connected import _ClientFactory, connect_to
from ._errors import ConnectionRejected, ConnectTimeout
from ._serving import DEFAULT_TIMEOUT, ServingPort, _not_a_factory
from ._tracking import (
    Tracked,
    close_and_wait,
    raise_errors,
)
from ._types import CleanconnReactor, check_timeout, default_reactor, enter_once


class _ConnectedMany:
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
            raise TypeError(_not_a_factory("connected_many", factory))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                f"connected_many(): count must be a positive int, got {count!r}"
            )
        self._port: ServingPort | None = port
        self._factory = factory
        self._count = count
        self._reactor = default_reactor(reactor)
        self._timeout = check_timeout(timeout, "connected_many()")
        self._conns: list[Tracked] = []
        self._peers: list[Tracked] = []
        self._connectors: list[IConnector] = []
        self._claims: list[Deferred[Tracked]] = []
        self._pending = count
        self._made: Deferred[None] = Deferred()
        self._entered = False

    # Owner -----------------------------------------------------------------

    def conn_opened(self, conn: Tracked) -> None:
        self._conns.append(conn)

    def conn_made(self, conn: Tracked) -> None:
        self._pending -= 1
        if self._pending == 0 and not self._made.called:
            self._made.callback(None)

    def conn_lost(self, conn: Tracked) -> None:
        pass

    def _failed(self, reason: Failure) -> None:
        if not self._made.called:
            self._made.errback(reason)

    def _release(self) -> list[Tracked]:
        """
        The scope is over: drop what refers back to it (each connection's
        wrapper does), so that it is freed by reference counting.
        """
        conns = [*self._conns, *self._peers]
        self._conns, self._peers, self._connectors, self._claims = [], [], [], []
        self._port = None
        return conns

    # The scope ---------------------------------------------------------------

    async def __aenter__(self) -> list[Any]:
        enter_once(self._entered, "connected_many()")
        self._entered = True
        port = self._port
        assert port is not None, "entered once, released at exit"
        if port.closed:
            raise ValueError(
                f"connected_many(): {port!r} belongs to a serving() scope that "
                "has ended; connect inside the serving() block."
            )
        timer = self._reactor.callLater(self._timeout, self._expire)
        try:
            self._connect_all(port)
            await self._made
            raise_errors(self._conns)
            self._peers = await self._find_peers(port)
            raise_errors(self._peers)
        except BaseException as e:
            for connector in self._connectors:
                if connector.state == "connecting":  # type: ignore[attr-defined]
                    connector.stopConnecting()
            conns = self._release()
            await close_and_wait(
                self._reactor, "connected_many()", conns, self._timeout, body=e
            )
            raise
        finally:
            if timer.active():
                timer.cancel()
        return [conn.wrapped for conn in self._conns]

    def _connect_all(self, port: ServingPort) -> None:
        factory = _ClientFactory(self._factory, self, False)
        address = port.getHost()
        self._connectors = [
            connect_to(self._reactor, address, factory, self._timeout)
            for _ in range(self._count)
        ]

    async def _find_peers(self, port: ServingPort) -> list[Tracked]:
        found: list[Tracked | Deferred[Tracked]] = []
        for conn in self._conns:
            peer = port._claim(conn)
            if isinstance(peer, Deferred):
                conn.when_lost(_rejects(peer, conn))
                self._claims.append(peer)
            found.append(peer)
        if self._claims:
            try:
                await gatherResults(self._claims, consumeErrors=True)
            except BaseException as e:
                for conn, peer in zip(self._conns, found, strict=True):
                    if isinstance(peer, Deferred):
                        port._forget_claim(conn, peer)
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
        for conn, server in zip(self._conns, peers, strict=True):
            port._remember_peer(conn, server)
        return peers

    def _expire(self) -> None:
        if not self._made.called:
            self._made.errback(
                ConnectTimeout(
                    f"connected_many(): {self._count - self._pending} of "
                    f"{self._count} clients connected within "
                    f"timeout={self._timeout}s.",
                    self._timeout,
                )
            )
            return
        # All connected, but some server sides never showed up.
        missing = sum(not claim.called for claim in self._claims)
        for claim in self._claims:
            if not claim.called:
                claim.errback(
                    ConnectTimeout(
                        f"connected_many(): the server side of {missing} "
                        "connection(s) did not run connectionMade within "
                        f"timeout={self._timeout}s.",
                        self._timeout,
                    )
                )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conns = self._release()
        scope = "connected_many()"
        await close_and_wait(
            self._reactor, scope, conns, self._timeout, body=exc, report=conns
        )


def _rejects(waiter: Deferred[Tracked], conn: Tracked) -> Any:
    def lost(_: Tracked) -> None:
        if not waiter.called:
            waiter.errback(
                ConnectionRejected(
                    f"connected_many(): the connection from {conn.key} was "
                    "closed before the server side ran connectionMade.",
                    conn.key,
                )
            )

    return lost


def connected_many(
    port: ServingPort,
    factory: IProtocolFactory,
    count: int,
    *,
    reactor: CleanconnReactor | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> _ConnectedMany:
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
    :param timeout: seconds to connect them all and for the server sides to
        appear, and for graceful closes at exit.
    :raises TypeError: ``port`` is not a plain serving port, or ``factory``
        is not a protocol factory.
    :raises ValueError: ``count`` or ``timeout`` is out of range.
    """
    return _ConnectedMany(port, factory, count, reactor, timeout)
