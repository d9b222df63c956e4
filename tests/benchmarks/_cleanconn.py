"""cleanconn, written as a user writes it from the README."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from twisted.internet.defer import gatherResults
from twisted.internet.protocol import Factory

from cleanconn import connected, connected_many, serving

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
    """``count`` clients at once with ``connected_many()``; ``(total, teardown)``."""
    start = perf_counter()
    async with serving(Factory.forProtocol(Echo), timeout=MANY_TIMEOUT) as port:
        async with connected_many(
            port, Factory.forProtocol(Collector), count, timeout=MANY_TIMEOUT
        ) as clients:
            for client in clients:
                client.transport.write(b"x")
            await gatherResults([client.read(1) for client in clients])
            at_peak()
            exiting = perf_counter()
    end = perf_counter()
    return end - start, end - exiting
