"""
One shape, one contender, in a fresh process: ``python -m
tests.benchmarks.shape_worker SHAPE CONTENDER COUNT [COUNT ...]``.

After a warm-up it runs one segment of ``COUNT`` units for each ``COUNT``,
each segment preceded by a full garbage collection, and prints one JSON
object on stdout: the wall-clock and CPU time of each segment.

Each segment is bracketed by a call to ``os.getpgrp()`` (:func:`mark`),
which nothing else in the process calls: run under
``valgrind --tool=callgrind --dump-before=getpgrp`` the process writes one
profile dump per segment, holding exactly that segment's instructions
(``_instructions`` does this). Natively the marks cost one system call.

The environment variable ``CLEANCONN_BENCH_PATH``, when set, is put first
on ``sys.path`` so that a private copy of cleanconn is measured.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from time import perf_counter, process_time
from typing import Any

_override = os.environ.get("CLEANCONN_BENCH_PATH")
if _override:
    sys.path.insert(0, _override)

#: The C function each mark calls; callgrind dumps before each call of it.
MARK_FUNCTION = "getpgrp"


def mark() -> None:
    """A segment boundary (a profile dump under callgrind)."""
    os.getpgrp()


def measure(shape_name: str, contender: str, counts: list[int]) -> dict[str, Any]:
    """Warm up, then one segment per count; the times, in seconds."""
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    from ._shapes import SHAPES

    shape = SHAPES[shape_name]
    run = shape.contenders[contender]
    walls: list[float] = []
    cpus: list[float] = []

    async def segments() -> None:
        await run(reactor, shape.warm)
        # What the imports and the warm-up left is never collected again:
        # a collection then costs what the shape's own objects cost, not
        # what the size of everything imported makes it cost.
        gc.collect()
        gc.freeze()
        for count in counts:
            gc.collect()
            mark()
            wall, cpu = perf_counter(), process_time()
            await run(reactor, count)
            walls.append(perf_counter() - wall)
            cpus.append(process_time() - cpu)
        gc.collect()
        mark()

    failure: list[Any] = []

    def start() -> None:
        d = ensureDeferred(segments())
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if failure:
        failure[0].raiseException()
    if len(walls) != len(counts):
        raise RuntimeError("the reactor stopped before the shape ended")
    import cleanconn

    return {
        "shape": shape_name,
        "contender": contender,
        "counts": counts,
        "wall": walls,
        "cpu": cpus,
        "cleanconn": os.path.dirname(cleanconn.__file__),
    }


def main(argv: list[str]) -> None:
    """``SHAPE CONTENDER COUNT [COUNT ...]``."""
    from ._shapes import SHAPES

    if len(argv) < 3 or argv[0] not in SHAPES:
        raise SystemExit(__doc__)
    shape, contender, *counts = argv
    if contender not in SHAPES[shape].contenders:
        raise SystemExit(f"no contender {contender!r} for {shape}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(measure(shape, contender, [int(c) for c in counts])))


if __name__ == "__main__":
    main(sys.argv[1:])
