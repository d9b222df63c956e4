"""
Bulk reads on a stream: ``python -m tests.benchmarks.bulk``.

The server writes N MB and closes; the client reads them with
``Stream.read()`` (everything until the end) and with
``Stream.readexactly(N MB)``, against a hand-written protocol that keeps
the chunks in a list and joins them once at ``connectionLost``. For N of
8, 16, 32 and 64 MB: milliseconds per MB, best of a few rounds. A read that
copied its buffer on each chunk would be quadratic: its time per MB would
grow eightfold from 8 to 64 MB. Every reader's time per MB grows a little
with N (fresh memory for the larger buffers); the stream's must grow no
more than the hand-written one's.

The same ``Stream.readexactly(N MB)`` through ``proxied()`` with no fault
(both legs on loopback) gives the proxy's throughput against the direct
read: the goal is at least half of it.
"""

from __future__ import annotations

import argparse
import gc
import os
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import react
from twisted.python.failure import Failure

from cleanconn import connected, proxied, serving

MB = 1 << 20
SIZES = (8, 16, 32, 64)


class _Send(Protocol):
    """Writes the factory's payload at once, then closes."""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        transport.write(self.factory.payload)
        transport.loseConnection()


class _Collect(Protocol):
    """The hand-written way: a list of chunks, joined at the end."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.done.callback(b"".join(self.chunks))


def _server(payload: bytes) -> Any:
    factory = Factory.forProtocol(_Send)
    factory.payload = payload
    return factory


async def _time(payload: bytes, factory: Any, read: Callable[[Any], Any]) -> float:
    """Seconds from connecting to having read ``payload`` with ``read``."""
    async with serving(_server(payload)) as port:
        start = perf_counter()
        async with connected(port, factory) as client:
            data = await read(client)
            elapsed = perf_counter() - start
    assert len(data) == len(payload)
    return elapsed


async def _read_all(payload: bytes) -> float:
    return await _time(payload, None, lambda stream: stream.read())


async def _readexactly(payload: bytes) -> float:
    return await _time(payload, None, lambda s: s.readexactly(len(payload)))


async def _proxied(payload: bytes) -> float:
    """Seconds to read ``payload`` with ``readexactly()`` through a proxy."""
    async with serving(_server(payload)) as port, proxied(port) as proxy:
        start = perf_counter()
        async with connected(proxy) as client:
            data = await client.readexactly(len(payload))
            elapsed = perf_counter() - start
    assert len(data) == len(payload)
    return elapsed


async def _hand(payload: bytes) -> float:
    return await _time(payload, Factory.forProtocol(_Collect), lambda p: p.done)


HAND = "hand-written: chunks in a list, joined at the end"
DIRECT = "`Stream.readexactly(N)`"
PROXIED = "`Stream.readexactly(N)` through `proxied()`"

READS: dict[str, Callable[[bytes], Awaitable[float]]] = {
    "`Stream.read()`": _read_all,
    DIRECT: _readexactly,
    HAND: _hand,
    PROXIED: _proxied,
}


async def measure(rounds: int) -> dict[str, dict[int, float]]:
    """Milliseconds per MB, best of ``rounds``, for each read and size."""
    results: dict[str, dict[int, float]] = {name: {} for name in READS}
    for size in SIZES:
        payload = os.urandom(MB) * size
        for name, read in READS.items():
            best = float("inf")
            for _ in range(rounds):
                gc.collect()
                best = min(best, await read(payload))
            results[name][size] = best * 1000 / size
    return results


def table(results: dict[str, dict[int, float]]) -> str:
    """The results as a Markdown table."""
    hand = results[HAND]
    head = "| read | " + " | ".join(f"{s} MB (ms/MB)" for s in SIZES)
    head += f" | {SIZES[-1]} MB / {SIZES[0]} MB | vs hand-written at {SIZES[-1]} MB |"
    lines = [head, "| --- |" + " ---: |" * (len(SIZES) + 2)]
    for name, by_size in results.items():
        cells = " | ".join(f"{by_size[s]:.2f}" for s in SIZES)
        growth = by_size[SIZES[-1]] / by_size[SIZES[0]]
        versus = by_size[SIZES[-1]] / hand[SIZES[-1]]
        lines.append(f"| {name} | {cells} | {growth:.2f}x | {versus:.2f}x |")
    big = SIZES[-1]
    throughput = results[DIRECT][big] / results[PROXIED][big]
    verdict = "met" if throughput >= 0.5 else "MISSED"
    lines.append("")
    lines.append(
        f"Through `proxied()` with no fault, {big} MB arrive at {throughput:.2f}x "
        f"the direct throughput (goal: at least 0.5x, {verdict})."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    async def run(reactor: Any) -> None:
        print(table(await measure(args.rounds)))

    react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
