"""cleanconn, written as a user writes it from the README."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.protocol import Factory

from cleanconn import connected, serving

from ._protocols import Collector, Echo

#: For thousands of clients at once: Twisted's own connect timeout, as the
#: hand-written pattern gets. 5,000 connects at once overflow the kernel's
#: 4,096 listen backlog, and a SYN dropped twice is retried after 3 s more.
MANY_TIMEOUT = 30.0


async def cycle(reactor: Any, count: int) -> list[tuple[float, float]]:
    """Listen, connect, echo one byte, tear down; ``(total, teardown)`` each."""
    times = []
    for _ in range(count):
        start = perf_counter()
        async with serving(Factory.forProtocol(Echo)) as port:
            async with connected(port, Factory.forProtocol(Collector)) as client:
                client.transport.write(b"x")
                await client.read(1)
                exiting = perf_counter()
        end = perf_counter()
        times.append((end - start, end - exiting))
    return times


async def fanout(
    reactor: Any, count: int, at_peak: Callable[[], object]
) -> tuple[float, float]:
    """``count`` clients at once, one task each; ``(total, teardown)``."""
    start = perf_counter()
    async with serving(Factory.forProtocol(Echo), timeout=MANY_TIMEOUT) as port:
        everyone_echoed: Deferred[None] = Deferred()
        release: list[Deferred[None]] = []

        async def client() -> None:
            try:
                async with connected(
                    port, Factory.forProtocol(Collector), timeout=MANY_TIMEOUT
                ) as proto:
                    proto.transport.write(b"x")
                    await proto.read(1)
                    released: Deferred[None] = Deferred()
                    release.append(released)
                    if len(release) == count:
                        everyone_echoed.callback(None)
                    await released
            except Exception as e:
                if not everyone_echoed.called:  # do not wait for the others
                    everyone_echoed.errback(e)
                raise

        clients = [ensureDeferred(client()) for _ in range(count)]
        try:
            await everyone_echoed
        finally:
            at_peak()
            exiting = perf_counter()
            for released in release:
                released.callback(None)
            await gatherResults(clients, consumeErrors=True)
    end = perf_counter()
    return end - start, end - exiting
