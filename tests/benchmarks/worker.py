"""
One measurement, in a fresh process: ``python -m tests.benchmarks.worker
SCENARIO CONTENDER COUNT``. Prints one JSON object on stdout.

Scenarios: ``cycle`` (``COUNT`` listen/connect/echo/teardown cycles, after a
warm-up), ``fanout`` (``COUNT`` clients at once, measured twice after a
small warm-up), ``memory`` (``COUNT`` connections held open at once: the
RSS they add, then, in a second pass, the bytes tracemalloc sees).

Each measured run starts with a full garbage collection, so that no
contender pays inside its window for the garbage of the imports and the
warm-up (a full collection costs ~15 ms here; when it fell inside a short
window it moved a contender's result by up to 10%, by luck). The collections
a contender's own garbage causes while it runs are measured.

The environment variable ``CLEANCONN_BENCH_PATH``, when set, is put first
on ``sys.path`` so that a private copy of cleanconn is benchmarked.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import sys
import tracemalloc
from collections.abc import Callable
from time import process_time
from typing import Any

_override = os.environ.get("CLEANCONN_BENCH_PATH")
if _override:
    sys.path.insert(0, _override)

TWISTED = ("cleanconn", "handwritten", "handtasks", "waituntil")
CONTENDERS = (*TWISTED, "asyncio", "blocking")


def rss() -> int:
    """The resident set size of this process now, in bytes."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def peak_rss() -> int:
    """The peak resident set size of this process, in bytes (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _nothing() -> None:
    pass


def _contender(name: str) -> Any:
    if name == "cleanconn":
        from . import _cleanconn

        return _cleanconn
    if name == "handwritten":
        from ._handwritten import handwritten

        return handwritten
    if name == "handtasks":
        from ._handwritten import hand_tasks

        return hand_tasks
    if name == "waituntil":
        from ._handwritten import wait_until

        return wait_until
    if name == "asyncio":
        from . import _asyncio

        return _asyncio
    from . import _blocking

    return _blocking


def _runner(name: str) -> Callable[[Callable[..., Any]], Any]:
    """Run a contender's call to completion, on its own event loop if any."""
    if name not in TWISTED:
        return lambda call: call()

    def on_reactor(call: Callable[..., Any]) -> Any:
        from twisted.internet import reactor
        from twisted.internet.defer import ensureDeferred

        box: list[Any] = []

        def start() -> None:
            d = ensureDeferred(call(reactor))
            d.addCallback(box.append)
            d.addErrback(box.append)
            d.addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(start)
        reactor.run()
        if not box:
            raise RuntimeError("the reactor stopped before the benchmark ended")
        result = box[0]
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    return on_reactor


def measure(scenario: str, name: str, count: int) -> dict[str, Any]:
    """Run one scenario for one contender; the numbers, in seconds and bytes."""
    contender = _contender(name)
    run = _runner(name)
    twisted = name in TWISTED
    out: dict[str, Any] = {"scenario": scenario, "contender": name, "count": count}
    if twisted:
        import cleanconn

        out["cleanconn"] = os.path.dirname(cleanconn.__file__)

    if scenario == "cycle":
        warm = max(count // 10, 3)

        cycle_cpu: list[float] = []

        def cycles(*reactor: Any) -> Any:
            async def both() -> Any:
                await contender.cycle(*reactor, warm)
                gc.collect()
                started = process_time()
                result = await contender.cycle(*reactor, count)
                cycle_cpu.append(process_time() - started)
                return result

            if twisted:
                return both()
            contender.cycle(warm)
            gc.collect()
            started = process_time()
            result = contender.cycle(count)
            cycle_cpu.append(process_time() - started)
            return result

        times = run(cycles)
        out["cycle"] = sum(t for t, _ in times) / count
        out["cycle_cpu"] = cycle_cpu[0] / count
        out["cycle_median"] = statistics.median(t for t, _ in times)
        out["teardown"] = statistics.median(t for _, t in times)
        return out

    peaks: dict[str, int] = {}

    cpu: list[float] = []

    def fan(size: int, at_peak: Callable[[], object]) -> Any:
        """One fan-out of ``size``; its CPU time goes to ``cpu``."""
        if twisted:

            async def on_reactor(reactor: Any) -> Any:
                gc.collect()
                started = process_time()
                result = await contender.fanout(reactor, size, at_peak)
                cpu.append(process_time() - started)
                return result

            return on_reactor

        def blocking() -> Any:
            gc.collect()
            started = process_time()
            result = contender.fanout(size, at_peak)
            cpu.append(process_time() - started)
            return result

        return blocking

    def sequence(*steps: Callable[..., Any]) -> Callable[..., Any]:
        if twisted:

            async def all_steps(reactor: Any) -> list[Any]:
                return [await step(reactor) for step in steps]

            return all_steps
        return lambda: [step() for step in steps]

    if scenario == "fanout":
        warm = fan(max(count // 10, 10), _nothing)
        results = run(sequence(warm, fan(count, _nothing), fan(count, _nothing)))
        out["fanout"] = [t / count for t, _ in results[1:]]
        out["fanout_teardown"] = [t for _, t in results[1:]]
        out["fanout_cpu"] = [t / count for t in cpu[1:]]
        return out

    # memory
    def base() -> None:
        gc.collect()
        peaks["base"] = rss()

    def at_peak() -> None:
        peaks["open"] = rss()
        peaks["peak"] = peak_rss()

    def traced_base() -> None:
        gc.collect()
        tracemalloc.start()
        peaks["traced_base"] = tracemalloc.get_traced_memory()[0]

    def traced_peak() -> None:
        peaks["traced_open"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()

    def then(first: Callable[[], None], step: Callable[..., Any]) -> Any:
        if twisted:

            async def after(reactor: Any) -> Any:
                first()
                return await step(reactor)

            return after

        def after_sync() -> Any:
            first()
            return step()

        return after_sync

    warm = fan(max(count // 20, 10), _nothing)
    run(
        sequence(
            warm,
            then(base, fan(count, at_peak)),
            then(traced_base, fan(count, traced_peak)),
        )
    )
    out["rss_per_conn"] = (peaks["open"] - peaks["base"]) / count
    out["traced_per_conn"] = (peaks["traced_open"] - peaks["traced_base"]) / count
    out["peak_rss"] = peaks["peak"]
    return out


def main(argv: list[str]) -> None:
    """``SCENARIO CONTENDER COUNT``."""
    scenario, name, count = argv
    if scenario not in ("cycle", "fanout", "memory") or name not in CONTENDERS:
        raise SystemExit(__doc__)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(measure(scenario, name, int(count))))


if __name__ == "__main__":
    main(sys.argv[1:])
