"""
Soak: many serve/connect/echo/teardown cycles in one process; nothing grows.

Run ``python tests/benchmarks/soak.py`` (or ``nox -s soak``). Each cycle is
``serving()`` + ``connected()`` + a one-byte echo + the scopes' teardown,
inside ``clean_reactor()``, so a cycle that leaves anything behind fails at
once. At the start, after a warm-up, at a few points in between and at the
end it prints the open file descriptors (``/proc/self/fd``), the reactor's
selectables, its pending DelayedCalls, the objects the garbage collector
tracks, and the resident set size (``/proc/self/statm``), each after a
``gc.collect()``.

It exits non-zero if, at the end, file descriptors, selectables or
DelayedCalls are above their values at the start, after the first cycle
(they must be exactly equal; the first listen makes Twisted reserve one
descriptor for good), or if RSS or tracked objects grew by more than a small allowance
since the warm-up (the first cycles fill caches and allocator pools; after
that a leak of even a few hundred bytes per cycle would exceed the
allowance over 10,000 cycles).

With ``--shape process`` each cycle is instead a child process:
``spawned()`` of ``sh -c 'echo up; exec cat'``, ready once it printed
``up``, one byte written to its stdin and read back from its stdout, then
the scope's exit (stdin closed, SIGTERM, reaped). Then ``children`` (this
process's child processes, from ``/proc``, zombies included) must also be
back to its start value.

Not a unit test: trial and pytest do not collect it. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from typing import Any

#: RSS may grow this much after the warm-up (allocator noise): 2 MiB, i.e.
#: about 200 bytes a cycle over 10,000 cycles.
RSS_ALLOWANCE = 2 * 1024 * 1024
#: Objects tracked by the garbage collector may grow this much after the
#: warm-up (caches that fill slowly); a leak of one object a cycle exceeds it.
OBJECTS_ALLOWANCE = 2000


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("echo", "process"), default="echo")
    parser.add_argument(
        "--cycles", type=int, default=None, help="10,000; 1,000 for process"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="a tenth of the cycles"
    )
    parser.add_argument("--points", type=int, default=5, help="samples in between")
    parser.add_argument(
        "--reactor",
        default="default",
        help="a twisted reactor name: default, select, poll, epoll, asyncio",
    )
    options = parser.parse_args()
    if options.cycles is None:
        options.cycles = 1_000 if options.shape == "process" else 10_000
    if options.warmup is None:
        options.warmup = options.cycles // 10
    return options


def install(name: str) -> None:
    if name != "default":
        from twisted.application.reactors import installReactor

        installReactor(name)


def sample(reactor: Any) -> dict[str, int]:
    """What must not grow, measured after a full collection."""
    gc.collect()
    selectables = {id(s) for s in [*reactor.getReaders(), *reactor.getWriters()]}
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "children": children(),
        "selectables": len(selectables),
        "delayed_calls": len(reactor.getDelayedCalls()),
        "gc_objects": len(gc.get_objects()),
        "rss_kib": resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024,
    }


def children() -> int:
    """This process's child processes, zombies included (from /proc)."""
    me = str(os.getpid())
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if fields[1] == me:
            count += 1
    return count


def show(label: str, cycles: int, values: dict[str, int], elapsed: float) -> None:
    per_cycle = f"{elapsed / cycles * 1e6:7.0f} us/cycle" if cycles else " " * 16
    fields = "  ".join(f"{key}={value}" for key, value in values.items())
    print(f"{label:>8} {cycles:>6} cycles {per_cycle}  {fields}", flush=True)


async def soak(reactor: Any, options: argparse.Namespace) -> int:
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import Factory, Protocol
    from twisted.internet.task import deferLater

    from cleanconn import clean_reactor, connected, printed, serving, spawned

    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    class Collector(Protocol):
        def __init__(self) -> None:
            self.echoed: Deferred[bytes] = Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.echoed.callback(data)

    async def process_cycle() -> None:
        async with clean_reactor(reactor=reactor):
            async with spawned(
                ["sh", "-c", "echo up; exec cat"], ready=printed("up"), reactor=reactor
            ) as child:
                child.stdin.write(b"x")
                assert await child.stdout.readexactly(len(b"up\nx")) == b"up\nx"

    async def echo_cycle() -> None:
        async with clean_reactor(reactor=reactor):
            async with serving(Factory.forProtocol(Echo), reactor=reactor) as port:
                async with connected(
                    port, Factory.forProtocol(Collector), reactor=reactor
                ) as client:
                    client.transport.write(b"x")
                    assert await client.echoed == b"x"

    cycle = process_cycle if options.shape == "process" else echo_cycle
    total = options.cycles
    warmup = min(options.warmup, total)
    checkpoints = {warmup, total}
    step = max(1, (total - warmup) // (options.points + 1))
    checkpoints.update(range(warmup + step, total, step))

    print(
        f"soak: {total} {options.shape} cycles on {type(reactor).__module__}."
        f"{type(reactor).__name__}, pid {os.getpid()}",
        flush=True,
    )
    # Let the reactor finish starting (it installs its SIGCHLD waker, a pipe
    # and a reader, once running) so the start values are its steady state.
    await deferLater(reactor, 0, lambda: None)
    show("before", 0, sample(reactor), 0.0)
    # The first listen makes Twisted reserve one file descriptor (/dev/null,
    # kept to survive EMFILE): the start values are taken after one cycle.
    began = time.perf_counter()
    await cycle()
    start = sample(reactor)
    show("start", 1, start, time.perf_counter() - began)
    after_warmup = start
    for done in range(2, total + 1):
        await cycle()
        if done in checkpoints:
            values = sample(reactor)
            label = "warmup" if done == warmup else "end" if done == total else ""
            show(label, done, values, time.perf_counter() - began)
            if done == warmup:
                after_warmup = values
    end = sample(reactor)

    grew = [
        f"{key}: {start[key]} at start, {end[key]} at the end"
        for key in ("fds", "children", "selectables", "delayed_calls")
        if end[key] > start[key]
    ]
    rss_growth = (end["rss_kib"] - after_warmup["rss_kib"]) * 1024
    if rss_growth > RSS_ALLOWANCE:
        grew.append(
            f"rss: {after_warmup['rss_kib']} KiB after warm-up, {end['rss_kib']} "
            f"KiB at the end (allowance {RSS_ALLOWANCE // 1024} KiB)"
        )
    objects_growth = end["gc_objects"] - after_warmup["gc_objects"]
    if objects_growth > OBJECTS_ALLOWANCE:
        grew.append(
            f"gc_objects: {after_warmup['gc_objects']} after warm-up, "
            f"{end['gc_objects']} at the end (allowance {OBJECTS_ALLOWANCE})"
        )
    if grew:
        print("soak: FAILED, these grew:", *grew, sep="\n  ", flush=True)
        return 1
    print(
        "soak: OK. fds, child processes, selectables and DelayedCalls back to "
        "their start "
        f"values; since the warm-up RSS changed by {rss_growth // 1024:+d} KiB "
        f"and tracked objects by {objects_growth:+d}.",
        flush=True,
    )
    return 0


def main() -> None:
    options = parse()
    install(options.reactor)
    from twisted.internet import defer, task

    async def run(reactor: Any) -> None:
        code = await soak(reactor, options)
        if code:
            raise SystemExit(code)  # task.react exits with it

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
