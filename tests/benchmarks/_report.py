"""The results table, the machine description and the results page."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from ._shape_report import Counts, Timed, instruction_goals, instruction_table
from ._shape_report import time_table as shape_time_table
from ._shapes import HAND, SHAPES

#: Contenders in table order, with the names the table shows.
CONTENDERS = {
    "cleanconn": "cleanconn (as in the README)",
    "handwritten": "hand-written Twisted pattern",
    "handtasks": "hand-written, one task per client",
    "waituntil": "Twisted `waitUntilAllDisconnected`",
    "asyncio": "asyncio streams",
    "blocking": "blocking sockets, no event loop",
}
CONTENDER_NAMES = list(CONTENDERS)
BASELINE = "handwritten"

#: ``(summary key, column title, scale, digits, with a ratio)``.
TIME_COLUMNS = (
    ("cycle", "cycle (us)", 1e6, 0, True),
    ("cycle_cpu", "cycle, CPU (us)", 1e6, 0, True),
    ("teardown", "teardown (us)", 1e6, 0, True),
    ("fanout", "fan-out 2,000 (us/conn)", 1e6, 0, True),
    ("fanout_cpu", "fan-out, CPU (us/conn)", 1e6, 0, True),
    ("fanout_teardown", "fan-out teardown (ms)", 1e3, 1, True),
)
MEMORY_COLUMNS = (
    ("rss_per_conn", "RSS per connection (bytes)", 1, 0, True),
    ("traced_per_conn", "Python heap per connection (bytes)", 1, 0, True),
    ("peak_rss", "peak RSS (MB)", 1e-6, 1, False),
)

#: ``(summary key, limit on the ratio to the hand-written pattern, goal)``.
#: Time is judged on instruction counts (``_shape_report``), not here:
#: wall time on a shared machine moves by more than the margins.
GOALS = (
    ("rss_per_conn", 1.10, "RSS per connection within 10% of the hand-written"),
    (
        "traced_per_conn",
        1.10,
        "Python heap per connection within 10% of the hand-written",
    ),
)


def machine() -> dict[str, str]:
    """CPU, cores, OS, Python and Twisted versions, and the date."""
    import twisted

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cleanconn": _revision(),
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Twisted": twisted.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _revision() -> str:
    """The commit of the cleanconn measured, if this is a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cleanconn"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(not a git checkout)"
    return f"commit {commit}" + (" with uncommitted changes" if dirty else "")


def _name(contender: str) -> str:
    if contender in CONTENDERS:
        return CONTENDERS[contender]
    return contender


def _cell(
    summary: Mapping[str, Mapping[str, float]],
    contender: str,
    key: str,
    scale: float,
    digits: int,
    ratio: bool,
) -> str:
    value = summary.get(contender, {}).get(key)
    if value is None:
        return "-"
    text = f"{value * scale:,.{digits}f}"
    base = summary.get(BASELINE, {}).get(key)
    if ratio and base:
        text += f" ({value / base:.2f}x)"
    return text


def table(summary: Mapping[str, Mapping[str, float]], contenders: list[str]) -> str:
    """Markdown tables: medians, with ratios to the hand-written pattern."""
    tables = [
        _table(summary, contenders, columns)
        for columns in (TIME_COLUMNS, MEMORY_COLUMNS)
    ]
    return "\n\n".join(t for t in tables if t)


def _table(
    summary: Mapping[str, Mapping[str, float]],
    contenders: list[str],
    all_columns: tuple[tuple[str, str, float, int, bool], ...],
) -> str:
    columns = [c for c in all_columns if any(c[0] in summary[n] for n in contenders)]
    if not columns:
        return ""
    lines = [
        "| contender | " + " | ".join(title for _, title, *_ in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for contender in contenders:
        cells = [
            _cell(summary, contender, key, scale, digits, ratio)
            for key, _, scale, digits, ratio in columns
        ]
        lines.append(f"| {_name(contender)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(
    summary: Mapping[str, Mapping[str, float]],
    paired: Mapping[str, tuple[float, float, float]] | None = None,
) -> list[str]:
    """
    One line per memory goal: met or missed, with the ratio of the medians,
    and (``paired``) the spread of the ratios measured round by round.
    """
    lines = []
    mine, base = summary.get("cleanconn", {}), summary.get(BASELINE, {})
    for key, limit, goal in GOALS:
        if key in mine and base.get(key):
            ratio = mine[key] / base[key]
            verdict = "met" if ratio <= limit else "missed"
            line = f"- {goal}: **{verdict}** ({ratio:.2f}x"
            if paired and key in paired:
                low, middle, high = paired[key]
                line += (
                    f"; round by round {low:.2f}x to {high:.2f}x, median {middle:.2f}x"
                )
            lines.append(line + ")")
    return lines


PAGE = """\
# Benchmarks

What does cleanconn cost over tearing down by hand? Each contender below
does the same work over real loopback sockets, and is compared with the
code a careful user writes by hand for the same thing. Lower is better.

The goals are judged on **instructions per unit**, counted by callgrind:
the same count on every run (to within about 0.5%), however busy the
machine. Wall-clock and CPU time are shown too, with their spread round by
round, as context: on a shared machine they move by more than the margins
the goals are about.

## Instructions per unit

{instruction_table}

## Goals

{goals}

## Where cleanconn's extra instructions go

Measured by counting the README cycle and the one-task-per-client fan-out
with one thing taken out of cleanconn at a time (callgrind, as above; the
same code counted from another directory differs by up to 1%, so smaller
effects than that are not listed):

- **A deadline timer** (a `DelayedCall`, armed and cancelled): about
  15,000 instructions (1.1% of a README cycle) for the exit's. The
  hand-written code has no bound at all, and hangs when a peer never
  reads. Every exit that closes a connection arms one: even with nothing
  left in Twisted's buffer, a close finishes only once the socket is
  writable, which a peer that never reads can stop for good (a test proves
  the exit still ends). A cancelled `DelayedCall` stays in the reactor's
  heap of timers until Twisted sweeps it (after 50 cancellations), and
  every timer pushed or popped meanwhile is compared with it: a cycle
  with no timer at all (no exit deadline, no connect timeout) costs 47,000
  instructions less. The hand-written code pays for Twisted's connect
  timeout; cleanconn passes `timeout=None` to `connectTCP` and bounds the
  whole entry (the connect, the server side, the TLS handshakes) with one
  timer of its own: `connected_many()` went from 1.02x to 0.99x with it,
  and the one-task-per-client fan-out by 2%. Closing an idle connection
  during the exit itself, with no timer, no write registration and no
  turn to wait, measured 1.01x on the README cycle, but a review broke
  it: the block can end inside protocol code (a timer's method of the
  protocol, a callback that goes on after firing the block's Deferred),
  under which the connection must not end, and STARTTLS and passing file
  descriptors hold data that the checks did not see. Closing such a
  connection on the next turn instead (before any I/O) saved 1%: not
  worth its reliance on Twisted's private state. The exit closes as
  Twisted does. Keeping the entry's timer through the block, to serve the
  exit too, saved 0.8%: a timer of cleanconn's would then be pending in
  the block, where a test may count the reactor's timers.
- **Closing the server side too**: about 1,200 instructions per
  connection (0.1%). The hand-written code closes the client and waits
  for the server to see the end of the stream; a server that paused
  reading, or one that is half-closeable, never does, and the test hangs.
  cleanconn closes both.
- **The wrappers and the bookkeeping**: a wrapper on each side that
  forwards every callback (and notes what the user's code raised), the
  scope objects, the set of open connections, the teardown object, and
  finding the server side of each client (one `getsockname()` and a dict
  lookup). This is the rest: about 5% of the README cycle, and most of
  the one-task-per-client fan-out's remainder, where each client has a
  scope of its own (a `connected_many()` client shares one). Counting
  the code of every fifth commit since the first release found where it
  grew: the commit that gave every scope one shape (a scope base, one
  connection set, a matcher, a teardown object) added 4.3%
  (1,268,050 to 1,323,518 instructions per cycle), in about 30 more
  Python calls per cycle; no function of cleanconn's takes more than 0.8%
  of the cycle under cProfile, and the small changes tried (no coroutine
  for the exit's wait, a cheaper log prefix) moved it by 0.15% or less.
- **`@deadline`**: one `DelayedCall` and a Deferred of its own for the body,
  which lets the deadline stop waiting for a body that ignores being
  cancelled: 3 to 4% of a README cycle.

The issue that set the README cycle's goal measured it at 0.97x with
another harness; this one counts the code of that day at 1.02x to 1.03x.

## Time per unit, by shape

{shape_time_table}

## Bulk reads on a stream

The server writes N MB at once and closes; the client reads them with
`Stream.read()` (everything until the end) and `Stream.readexactly(N)`,
against a protocol that keeps the chunks in a list and joins them once at
`connectionLost` (`python -m tests.benchmarks.bulk`; best of 3, in one
process). A read that copied its buffer on each chunk would be quadratic:
its time per MB would grow eightfold from 8 to 64 MB. A stream keeps the
chunks that arrive while a `read()` or `readexactly()` waits as they came
and joins them once, as the hand-written protocol does.

{bulk_table}

## Time and memory against the alternatives

Each measurement runs in a fresh process, the contenders take turns in a
rotating order, and each number is the median over the rounds. Ratios are
to the hand-written Twisted pattern.

{time_table}

{memory_table}

## What is measured

- **instructions per unit**: each shape and contender runs in a fresh
  process under `valgrind --tool=callgrind`, on the same Python, with
  address randomisation off (`setarch -R`) and `PYTHONHASHSEED=0`, so the
  count repeats from run to run to within about 0.5% (ratios within
  0.01x). After a warm-up (then `gc.freeze()`, so that a
  collection costs what the shape's own objects cost), it runs N1 units,
  then N2 units, each segment after a full collection and between two
  marks at which callgrind dumps its counts. Per unit is
  `(Ir(N2) - Ir(N1)) / (N2 - N1)`: start-up, imports and what a segment
  costs once cancel out. User-space instructions of the whole process
  (every thread, Python, OpenSSL and the C library) are counted; the
  kernel's are not.
- **the shapes**: {shape_list}
- **cycle**: listen, connect, echo one byte, full teardown (stop listening,
  both `connectionLost`s, all three waited for), repeated; wall-clock time
  per cycle, and the CPU time the process used for it.
- **teardown**: the teardown alone within a cycle, from the scope's exit
  (for the others: the first `loseConnection`) until everything is lost.
  cleanconn's teardown is driven by the connections' own events: its
  timeout timer never fires when the connections close, and nothing polls.
  `waitUntilAllDisconnected` polls every 10 ms.
- **fan-out**: one server, 2,000 clients connected at once, a one-byte echo
  on each, full teardown; time per connection (wall clock and CPU), and the
  teardown alone. Every contender listens with a backlog of 4,096 (Twisted's
  default of 50 drops SYNs and costs a second per retry).
- **memory**: 5,000 connections open at once, both ends in one process: the
  resident memory they add per connection, the Python heap `tracemalloc`
  sees per connection (a second pass in the same process), and the
  process's peak RSS.

Each measured run starts with a full garbage collection, so that no
contender pays inside its window for the garbage of the imports and the
warm-up; the collections its own garbage causes while it runs are measured.
cleanconn's scopes leave no reference cycle behind (a test checks it), so
everything they made is freed by reference counting as each scope ends.

## The contenders

- **cleanconn**: `async with serving(...)` and `async with connected(...)`
  as the README writes them, and in the other shapes above. For fan-out
  and memory, `async with connected_many(port, factory, count)`,
  cleanconn's scope for many clients at once (as the README and the "many
  clients" guide show); these scopes get `timeout=30` (the length of
  Twisted's own connect timeout, which the other Twisted contenders get;
  cleanconn bounds each entry with one timer of its own instead), as
  5,000 connects at once overflow the kernel's listen backlog of 4,096 and
  a SYN dropped twice is only retried seconds later.
- **hand-written Twisted pattern**: protocols that fire Deferreds from
  `connectionMade` and `connectionLost`; one client factory for all the
  connections; the teardown closes the clients, stops listening and waits
  for `stopListening` and for every client's and server's `connectionLost`.
  For TLS the protocols also fire a Deferred from `handshakeCompleted`
  (`IHandshakeListener`), and both handshakes are waited for before the
  echo; for HTTP, treq with its own persistent `HTTPConnectionPool`,
  `closeCachedConnections()` (which fires once the client side is lost),
  and a `Site` whose channels fire a Deferred from `connectionLost`.
- **hand-written, one task per client**: the same protocols, shaped like
  the cleanconn code (a task, a client factory and a Deferred chain per
  client). Its distance to the row above is what the task-per-client shape
  costs, whoever does the teardown; its distance to cleanconn is what
  cleanconn costs.
- **Twisted `waitUntilAllDisconnected`**: the hand-written set-up, with
  `twisted.internet.testing.waitUntilAllDisconnected` waiting for the
  disconnects instead of Deferreds.
- **asyncio streams**: `asyncio.start_server` and `asyncio.open_connection`;
  the teardown closes the clients and the server and waits for every
  client's `wait_closed()`, the server's, and every handler's end.
- **blocking sockets**: `socket` calls with no event loop: the floor no
  framework can beat.

## The machine

{machine}

## Reproduce

From a clone, on a machine with Python 3, pip and valgrind
(`sudo apt-get install valgrind`):

```console
$ python3 -m pip install nox
$ python3 -m nox -s bench                    # rewrites this page
$ python3 -m nox -s bench -- --quick         # a short run; prints the tables only
$ python3 -m nox -s bench -- --instructions  # instruction counts only, a few minutes
```

The suite lives in `tests/benchmarks/`: `python -m tests.benchmarks.run
--help` lists its options (one scenario or shape, some contenders, or a
private copy of cleanconn side by side with `--variant NAME=PATH`, which
`--instructions` counts too), and `python -m tests.benchmarks.profiling`
profiles cleanconn's per-connection path against the hand-written pattern
(cProfile, and tracemalloc by line). Absolute times drift between runs and
machines: compare ratios measured in one run.
"""


def markdown_page(
    summary: Mapping[str, Mapping[str, float]],
    contenders: list[str],
    info: Mapping[str, str],
    quick: bool,
    paired: Mapping[str, tuple[float, float, float]] | None = None,
    counts: Counts | None = None,
    timed: Timed | None = None,
    bulk: str | None = None,
) -> str:
    """The results page, in MyST Markdown."""
    described = "\n".join(f"- {key}: {value}" for key, value in info.items())
    if quick:
        described += "\n- a `--quick` run: fewer rounds"
    shape_contenders = ["cleanconn", HAND]
    shape_list = "; ".join(
        f"{shape.title} (per {shape.unit}; N1={shape.counted[0]}, "
        f"N2={shape.counted[1]})"
        for shape in SHAPES.values()
    )
    return PAGE.format(
        instruction_table=instruction_table(counts, shape_contenders)
        if counts
        else "(not measured)",
        shape_time_table=shape_time_table(timed, shape_contenders)
        if timed
        else "(not measured)",
        shape_list=shape_list,
        bulk_table=bulk or "(not measured)",
        time_table=_table(summary, contenders, TIME_COLUMNS) or "(not measured)",
        memory_table=_table(summary, contenders, MEMORY_COLUMNS) or "(not measured)",
        goals="\n".join([*instruction_goals(counts or {}), *goals(summary, paired)]),
        machine=described,
    )
