"""
Where cleanconn's per-connection time and memory go, against the
hand-written pattern: ``python -m tests.benchmarks.profiling``.

- cProfile over cycles and over one fan-out: function calls per
  connection, and the functions that cost the most;
- tracemalloc at the peak of a fan-out: the bytes each open connection
  holds, by the line that allocated them;
- ``--shape NAME``: cProfile over one shape of ``_shapes`` for cleanconn
  and the hand-written code: the calls each makes per unit, by function,
  and by package (cleanconn, twisted, ...), to see where cleanconn's extra
  instructions go.

``CLEANCONN_BENCH_PATH`` selects a private copy of cleanconn, as for the
worker.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

_override = os.environ.get("CLEANCONN_BENCH_PATH")
if _override:
    sys.path.insert(0, _override)

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402

from . import _cleanconn  # noqa: E402
from ._handwritten import hand_tasks, handwritten  # noqa: E402

CONTENDERS: dict[str, Any] = {
    "cleanconn": _cleanconn,
    "handwritten": handwritten,
    "handtasks": hand_tasks,
}


def _stats(profile: cProfile.Profile, per: int, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    total = stats.total_calls
    out.write(f"{total / per:,.0f} function calls per connection\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def _profile(name: str, cycles: int, fan: int, top: int) -> None:
    contender = CONTENDERS[name]
    await contender.cycle(reactor, 50)
    profile = cProfile.Profile()
    profile.enable()
    await contender.cycle(reactor, cycles)
    profile.disable()
    print(f"=== {name}: cProfile, {cycles} cycles")
    print(_stats(profile, cycles, top))
    profile = cProfile.Profile()
    profile.enable()
    await contender.fanout(reactor, fan, lambda: None)
    profile.disable()
    print(f"=== {name}: cProfile, fan-out of {fan}")
    print(_stats(profile, fan, top))


async def _memory(name: str, fan: int, top: int) -> None:
    contender = CONTENDERS[name]
    await contender.fanout(reactor, 100, lambda: None)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    peak: list[tracemalloc.Snapshot] = []
    await contender.fanout(
        reactor, fan, lambda: peak.append(tracemalloc.take_snapshot())
    )
    tracemalloc.stop()
    diffs = peak[0].compare_to(before, "lineno")
    total = sum(d.size_diff for d in diffs)
    print(f"=== {name}: tracemalloc, {total / fan:,.0f} bytes per open connection")
    for diff in diffs[:top]:
        frame = diff.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        print(
            f"{diff.size_diff / fan:8,.0f} B/conn {diff.count_diff / fan:6.2f} "
            f"blocks/conn  {where}"
        )
    print()


async def _profile_shape(shape_name: str, units: int, top: int) -> None:
    from ._shapes import HAND, SHAPES

    shape = SHAPES[shape_name]
    per_function: dict[str, dict[str, float]] = {}
    for name in ("cleanconn", HAND):
        run = shape.contenders[name]
        await run(reactor, shape.warm)
        gc.collect()
        profile = cProfile.Profile()
        profile.enable()
        await run(reactor, units)
        profile.disable()
        stats: Any = pstats.Stats(profile)
        calls: dict[str, float] = {}
        packages: dict[str, float] = {}
        for (filename, line, function), row in stats.stats.items():
            key = f"{_short(filename)}:{line}({function})"
            calls[key] = row[1] / units  # primitive + recursive calls
            package = _package(filename)
            packages[package] = packages.get(package, 0) + row[1] / units
        per_function[name] = calls
        total = sum(calls.values())
        print(f"=== {name}, {shape.title}: {total:,.1f} calls per {shape.unit}")
        for package, n in sorted(packages.items(), key=lambda kv: -kv[1]):
            print(f"{n:10,.1f}  {package}")
        print()
    mine, theirs = per_function["cleanconn"], per_function[HAND]
    diff = {k: mine.get(k, 0) - theirs.get(k, 0) for k in {*mine, *theirs}}
    print(f"=== calls per {shape.unit}: cleanconn minus hand-written, by function")
    for key, n in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
        print(f"{n:+8.2f}  {mine.get(key, 0):6.2f} {theirs.get(key, 0):6.2f}  {key}")


def _package(filename: str) -> str:
    for marker in ("/cleanconn/", "/twisted/", "/treq/", "/OpenSSL/", "/zope/"):
        if marker in filename:
            return marker.strip("/")
    if "/tests/benchmarks/" in filename or "/examples/" in filename:
        return "benchmark code"
    return "builtins" if filename == "~" else "stdlib and other"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3."):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.replace(os.getcwd() + "/", "")


def main(argv: list[str] | None = None) -> None:
    """Profile both contenders on one reactor run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", choices=["cpu", "memory"], default=None)
    parser.add_argument("--shape", default=None, help="profile one shape")
    parser.add_argument("--units", type=int, default=200, help="units of --shape")
    parser.add_argument("contenders", nargs="*", default=["cleanconn", "handwritten"])
    args = parser.parse_args(argv)

    async def everything() -> None:
        if args.shape:
            await _profile_shape(args.shape, args.units, args.top)
            return
        for name in args.contenders:
            if args.only != "memory":
                await _profile(name, args.cycles, args.fanout, args.top)
            if args.only != "cpu":
                await _memory(name, args.fanout, args.top)

    def start() -> None:
        d = ensureDeferred(everything())
        d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    run: Callable[[], None] = reactor.run
    reactor.callWhenRunning(start)
    run()


if __name__ == "__main__":
    main()
