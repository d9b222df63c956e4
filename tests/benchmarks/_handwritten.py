"""
The hand-written Twisted pattern (server and client protocols firing
Deferreds from ``connectionLost``, a ``tearDown`` that waits on all three),
and the same set-up torn down with Twisted's ``waitUntilAllDisconnected``.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    gatherResults,
    maybeDeferred,
)
from twisted.internet.testing import waitUntilAllDisconnected

from ._protocols import (
    BACKLOG,
    Echo,
    LosingCollector,
    LosingEchoFactory,
    MadeCollector,
    MadeFactory,
    RecordingFactory,
)


async def _all(waits: list[Deferred[Any]]) -> list[Any]:
    """Await every one: one at a time for a single connection, as a test
    of one connection is written by hand; gathered for many."""
    if len(waits) == 1:
        return [await waits[0]]
    result: list[Any] = await gatherResults(waits)
    return result


async def _echoed(
    reactor: Any, server_factory: Any, client_factory: MadeFactory, count: int
) -> tuple[Any, list[Any]]:
    """Listen, connect ``count`` clients, echo one byte on each."""
    port = reactor.listenTCP(0, server_factory, backlog=BACKLOG, interface="127.0.0.1")
    address = port.getHost()
    for _ in range(count):
        reactor.connectTCP(address.host, address.port, client_factory)
    clients = await _all(client_factory.made)
    for client in clients:
        client.transport.write(b"x")
    await _all([client.read(1) for client in clients])
    return port, clients


async def _hand(
    reactor: Any, count: int, at_peak: Callable[[], object]
) -> tuple[float, float]:
    start = perf_counter()
    server_factory = LosingEchoFactory()
    client_factory = MadeFactory(LosingCollector, count)
    port, clients = await _echoed(reactor, server_factory, client_factory, count)
    at_peak()
    exiting = perf_counter()
    for client in clients:
        client.transport.loseConnection()
    stopped = maybeDeferred(port.stopListening)
    await gatherResults([stopped, *client_factory.lost, *server_factory.lost])
    end = perf_counter()
    return end - start, end - exiting


async def _wait_until(
    reactor: Any, count: int, at_peak: Callable[[], object]
) -> tuple[float, float]:
    start = perf_counter()
    server_factory = RecordingFactory(Echo)
    client_factory = MadeFactory(MadeCollector, count)
    port, clients = await _echoed(reactor, server_factory, client_factory, count)
    at_peak()
    exiting = perf_counter()
    for client in clients:
        client.transport.loseConnection()
    await maybeDeferred(port.stopListening)
    await waitUntilAllDisconnected(reactor, [*clients, *server_factory.built])
    end = perf_counter()
    return end - start, end - exiting


def _nothing() -> None:
    pass


class _Contender:
    def __init__(
        self,
        run: Callable[[Any, int, Callable[[], object]], Any],
    ) -> None:
        self._run = run

    async def cycle(self, reactor: Any, count: int) -> list[tuple[float, float]]:
        """Listen, connect, echo one byte, tear down; ``(total, teardown)`` each."""
        return [await self._run(reactor, 1, _nothing) for _ in range(count)]

    async def fanout(
        self, reactor: Any, count: int, at_peak: Callable[[], object]
    ) -> tuple[float, float]:
        """``count`` clients at once; ``(total, teardown)``."""
        result: tuple[float, float] = await self._run(reactor, count, at_peak)
        return result


handwritten = _Contender(_hand)
wait_until = _Contender(_wait_until)


async def _hand_tasks(
    reactor: Any, count: int, at_peak: Callable[[], object]
) -> tuple[float, float]:
    """The hand-written pattern shaped like the cleanconn code: a task per client."""
    start = perf_counter()
    server_factory = LosingEchoFactory()
    port = reactor.listenTCP(0, server_factory, backlog=BACKLOG, interface="127.0.0.1")
    address = port.getHost()
    everyone_echoed: Deferred[None] = Deferred()
    release: list[Deferred[None]] = []

    async def client() -> None:
        client_factory = MadeFactory(LosingCollector, 1)
        reactor.connectTCP(address.host, address.port, client_factory)
        proto = await client_factory.made[0]
        proto.transport.write(b"x")
        await proto.read(1)
        released: Deferred[None] = Deferred()
        release.append(released)
        if len(release) == count:
            everyone_echoed.callback(None)
        await released
        proto.transport.loseConnection()
        await proto.lost

    clients = [ensureDeferred(client()) for _ in range(count)]
    await everyone_echoed
    at_peak()
    exiting = perf_counter()
    for released in release:
        released.callback(None)
    stopped = maybeDeferred(port.stopListening)
    await gatherResults([stopped, *clients, *server_factory.lost])
    end = perf_counter()
    return end - start, end - exiting


hand_tasks = _Contender(_hand_tasks)
