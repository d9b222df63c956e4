"""The results table, the machine description and the results page."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping

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
COLUMNS = (
    ("cycle", "cycle (us)", 1e6, 0, True),
    ("teardown", "teardown (us)", 1e6, 0, True),
    ("fanout", "fan-out 2,000 (us/conn)", 1e6, 0, True),
    ("fanout_teardown", "fan-out teardown (ms)", 1e3, 1, True),
    ("rss_per_conn", "RSS/conn at 5,000 (bytes)", 1, 0, True),
    ("traced_per_conn", "traced/conn (bytes)", 1, 0, True),
    ("peak_rss", "peak RSS (MB)", 1e-6, 1, False),
)

#: ``(summary key, limit on the ratio to the hand-written pattern, goal)``.
GOALS = (
    ("cycle", 1.05, "cycle at most 1.05x the hand-written pattern"),
    ("fanout", 1.0, "fan-out at most 1.0x the hand-written pattern"),
    ("rss_per_conn", 1.10, "RSS per connection within 10% of the hand-written"),
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
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Twisted": twisted.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


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
    """A Markdown table: medians, with ratios to the hand-written pattern."""
    columns = [c for c in COLUMNS if any(c[0] in summary[n] for n in contenders)]
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


def goals(summary: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per goal of issue 6: met or missed, with the ratio measured."""
    lines = []
    mine, base = summary.get("cleanconn", {}), summary.get(BASELINE, {})
    for key, limit, goal in GOALS:
        if key in mine and base.get(key):
            ratio = mine[key] / base[key]
            verdict = "met" if ratio <= limit else "missed"
            lines.append(f"- {goal}: **{verdict}** ({ratio:.2f}x)")
    return lines


PAGE = """\
# Benchmarks

What does cleanconn cost over tearing down by hand? Each contender below
does exactly the same work over real loopback sockets, and each number is a
median over interleaved rounds, every round in fresh processes. Ratios are
to the hand-written Twisted pattern (lower is better).

{table}

{goals}

- **cycle**: listen, connect, echo one byte, full teardown (stop listening,
  both `connectionLost`s), repeated; time per cycle.
- **teardown**: the teardown alone within a cycle, from the scope's exit
  (or the first `loseConnection`) until everything is lost. cleanconn's
  teardown is event driven: no timer fires and nothing polls.
  `waitUntilAllDisconnected` polls every 10 ms.
- **fan-out**: one server, 2,000 clients connected at once, a one-byte echo
  on each, full teardown; total time per connection, and the teardown alone.
  Every contender listens with a backlog of 4,096.
- **memory**: 5,000 connections open at once (both ends in one process):
  the resident memory they add per connection, the Python allocations
  `tracemalloc` sees per connection, and the process's peak RSS.

## The contenders

- **cleanconn**: `async with serving(...)` and `async with connected(...)`
  as the README writes them; for fan-out and memory, one task per client,
  each holding its `connected()` scope open until all have echoed.
- **hand-written Twisted pattern**: protocols that fire Deferreds from
  `connectionMade` and `connectionLost`; the teardown closes the clients,
  stops listening and waits for `stopListening`, every client's and every
  server's `connectionLost`.
- **Twisted `waitUntilAllDisconnected`**: the same set-up, with
  `twisted.internet.testing.waitUntilAllDisconnected` waiting for the
  disconnects.
- **asyncio streams**: `asyncio.start_server` and `asyncio.open_connection`;
  the teardown closes the clients and the server and waits for every
  client's `wait_closed()`, the server's, and every handler's end.
- **blocking sockets**: `socket` calls with no event loop: the floor no
  framework can beat.

## The machine

{machine}

## Reproduce

From a clone, on a machine with Python 3 and pip:

```
python3 -m pip install --quiet nox
python3 -m nox -s bench              # about three minutes; rewrites this page
python3 -m nox -s bench -- --quick   # a short run, prints the table only
```

The suite lives in `tests/benchmarks/` (`python -m tests.benchmarks.run
--help`). Absolute times drift between runs and machines: compare ratios
measured in one run.
"""


def markdown_page(
    summary: Mapping[str, Mapping[str, float]],
    contenders: list[str],
    info: Mapping[str, str],
    quick: bool,
) -> str:
    """The results page, in MyST Markdown."""
    described = "\n".join(f"- {key}: {value}" for key, value in info.items())
    if quick:
        described += "\n- a `--quick` run: fewer rounds"
    return PAGE.format(
        table=table(summary, contenders),
        goals="\n".join(["Goals:", "", *goals(summary)]),
        machine=described,
    )
