"""
Run the benchmark suite: ``python -m tests.benchmarks.run [--quick]``, or
``--instructions`` for the instruction counts alone (a few minutes).

Every measurement runs in a fresh process (so the reactor starts clean and
RSS is not shared); rounds interleave the contenders in a rotating order so
that noise from the machine falls on all of them alike; the table reports
medians over rounds, and ratios to the hand-written Twisted pattern.

Every shape (``_shapes``) is also counted in instructions per unit under
callgrind (``_instructions``): the goals are judged on those counts, which
are the same on every run; wall and CPU time per unit, with their spread
round by round, are shown next to them.

``--variant NAME=PATH`` adds a contender ``cleanconn[NAME]``: the cleanconn
package found in PATH (a directory holding ``cleanconn/``), to compare a
change side by side. ``--only`` restricts the scenarios, ``--shape`` the
shapes, ``--contender`` the contenders; the results page is written on a
full run only, unless ``--output`` says where.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _instructions
from ._report import BASELINE, CONTENDER_NAMES, machine, markdown_page, table
from ._shape_report import instruction_table, time_table
from ._shapes import HAND, SHAPES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "benchmarks.md"

#: ``scenario: (full rounds, quick rounds)``.
ROUNDS = {"cycle": (9, 3), "fanout": (5, 2), "memory": (3, 1), "shapes": (5, 2)}
#: Connections for fan-out and memory; cycles per worker, by contender speed.
FANOUT, MEMORY = 2000, 5000
CYCLES = {"fast": (400, 150), "slow": (40, 20)}


def _count(scenario: str, contender: str, quick: bool) -> int:
    if scenario == "fanout":
        return FANOUT
    if scenario == "memory":
        return MEMORY
    speed = "slow" if contender == "waituntil" else "fast"
    return CYCLES[speed][quick]


def _in_process(
    module: str, arguments: list[str], contender: str, variants: dict[str, str]
) -> dict[str, Any]:
    """
    Run ``python -m module CONTENDER-NAME *arguments`` for ``contender``
    (``cleanconn[VARIANT]`` runs the cleanconn in ``variants[VARIANT]``); the
    JSON object its last line prints, with the contender.
    """
    env = dict(os.environ)
    env.pop("CLEANCONN_BENCH_PATH", None)
    name = contender
    if "[" in contender:
        name, variant = contender.rstrip("]").split("[")
        env["CLEANCONN_BENCH_PATH"] = variants[variant]
    first, *rest = arguments
    done = subprocess.run(
        [sys.executable, "-m", module, first, name, *rest],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {first} {contender} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["contender"] = contender
    return result


def _rotated(contenders: list[str], r: int) -> list[str]:
    """The contenders in round ``r``'s order: each starts a round in turn."""
    first = r % len(contenders)
    return contenders[first:] + contenders[:first]


def _worker(
    scenario: str, contender: str, count: int, variants: dict[str, str]
) -> dict[str, Any]:
    return _in_process(
        "tests.benchmarks.worker", [scenario, str(count)], contender, variants
    )


def run(
    scenarios: list[str],
    contenders: list[str],
    quick: bool,
    variants: dict[str, str],
    rounds_wanted: int | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every scenario, rounds interleaved; the raw results by scenario."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for scenario in scenarios:
        rounds = rounds_wanted or ROUNDS[scenario][quick]
        raw[scenario] = {c: [] for c in contenders}
        for r in range(rounds):
            order = _rotated(contenders, r)
            for contender in order:
                count = _count(scenario, contender, quick)
                raw[scenario][contender].append(
                    _worker(scenario, contender, count, variants)
                )
            print(f"  {scenario}: round {r + 1}/{rounds} done", flush=True)
            if save is not None:
                save(raw)
    return raw


def _shape_worker(
    shape: str, contender: str, count: int, variants: dict[str, str]
) -> dict[str, Any]:
    return _in_process(
        "tests.benchmarks.shape_worker", [shape, str(count)], contender, variants
    )


def run_shapes(
    shapes: list[str],
    contenders: list[str],
    rounds: int,
    variants: dict[str, str],
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Wall and CPU time of every shape, contenders in a rotating order."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in range(rounds):
        for shape in shapes:
            by = raw.setdefault(shape, {c: [] for c in contenders})
            order = _rotated(contenders, r)
            for contender in order:
                count = SHAPES[shape].timed
                by[contender].append(_shape_worker(shape, contender, count, variants))
        print(f"  shapes: round {r + 1}/{rounds} done", flush=True)
    return raw


def summarise(
    raw: dict[str, dict[str, list[dict[str, Any]]]],
) -> dict[str, dict[str, float]]:
    """Medians over rounds (and over repetitions inside a round)."""
    keys = {
        "cycle": ("cycle", "teardown", "cycle_cpu"),
        "fanout": ("fanout", "fanout_teardown", "fanout_cpu"),
        "memory": ("rss_per_conn", "traced_per_conn", "peak_rss"),
    }
    summary: dict[str, dict[str, float]] = {}
    for scenario, by_contender in raw.items():
        for contender, results in by_contender.items():
            row = summary.setdefault(contender, {})
            for key in keys[scenario]:
                values: list[float] = []
                for result in results:
                    value = result.get(key, [])
                    values.extend(value if isinstance(value, list) else [value])
                if values:
                    row[key] = statistics.median(values)
    return summary


def paired_ratios(
    raw: dict[str, dict[str, list[dict[str, Any]]]],
) -> dict[str, tuple[float, float, float]]:
    """
    For each timed key, cleanconn's ratio to the hand-written pattern within
    each round (the two ran side by side): ``(lowest, median, highest)``.
    """
    spread: dict[str, tuple[float, float, float]] = {}
    for scenario, keys in (("cycle", ("cycle",)), ("fanout", ("fanout",))):
        by_contender = raw.get(scenario, {})
        mine, base = by_contender.get("cleanconn"), by_contender.get(BASELINE)
        if not mine or not base:
            continue
        for key in keys:
            ratios = sorted(
                statistics.median(_values(a, key)) / statistics.median(_values(b, key))
                for a, b in zip(mine, base, strict=False)
            )
            spread[key] = (ratios[0], statistics.median(ratios), ratios[-1])
    return spread


def _values(result: dict[str, Any], key: str) -> list[float]:
    value = result[key]
    return value if isinstance(value, list) else [value]


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run, print the tables, write the results page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="only count instructions per unit (callgrind) and print them",
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(ROUNDS), help="run this scenario"
    )
    parser.add_argument(
        "--shape", action="append", choices=list(SHAPES), help="only this shape"
    )
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results page to write (default: {DOCS.relative_to(ROOT)}, "
        "on a full run only)",
    )
    parser.add_argument(
        "--contender",
        action="append",
        choices=CONTENDER_NAMES,
        help="run only this contender (and the variants)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per scenario")
    parser.add_argument("--json", type=Path, default=None, help="raw results")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="do not measure: render the results saved by --json",
    )
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    chosen = args.contender or CONTENDER_NAMES
    contenders = [*chosen, *(f"cleanconn[{name}]" for name in variants)]
    shape_contenders = ["cleanconn", HAND, *(f"cleanconn[{n}]" for n in variants)]
    shapes = args.shape or list(SHAPES)
    partial = args.quick or args.only or args.contender or variants or args.rounds
    if args.instructions:
        _instructions_only(shapes, shape_contenders, variants, args.json)
        return
    scenarios = args.only or list(ROUNDS)
    counts: dict[str, Any] = {}
    timed: dict[str, Any] = {}
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        info, raw, quick = saved["machine"], saved["results"], saved["quick"]
        counts, timed = saved.get("instructions", {}), saved.get("shapes", {})
        contenders = list(next(iter(raw.values())))
    else:
        count_them = args.only is None or args.shape is not None
        if count_them and _instructions.valgrind() is None:
            if not partial:  # the page's goals are judged on the counts
                raise SystemExit(_instructions.MISSING)
            print(_instructions.MISSING + "\n(going on without them)\n")
            count_them = False
        info, quick = machine(), args.quick
        print("cleanconn benchmarks:", ", ".join(f"{k} {v}" for k, v in info.items()))
        started = time.monotonic()

        def save(raw: dict[str, Any]) -> None:
            if args.json:
                saved = {
                    "machine": info,
                    "quick": quick,
                    "results": raw,
                    "shapes": timed,
                    "instructions": counts,
                }
                args.json.write_text(json.dumps(saved, indent=1))

        if count_them:
            counts.update(_instructions.count_all(shapes, shape_contenders, variants))
        if "shapes" in scenarios:
            rounds = args.rounds or ROUNDS["shapes"][quick]
            timed.update(run_shapes(shapes, shape_contenders, rounds, variants))
        others = [s for s in scenarios if s != "shapes"]
        raw = run(others, contenders, quick, variants, args.rounds, save)
        save(raw)
        print(f"({time.monotonic() - started:.0f} s)")
    summary = summarise(raw)
    print()
    if counts:
        print(instruction_table(counts, shape_contenders) + "\n")
    if timed:
        print(time_table(timed, shape_contenders) + "\n")
    print(table(summary, contenders))
    output = args.output
    if output is None and not partial:
        output = DOCS
    if output is not None:
        bulk = None if args.from_json else _bulk()
        output.parent.mkdir(parents=True, exist_ok=True)
        page = markdown_page(
            summary, contenders, info, quick, paired_ratios(raw), counts, timed, bulk
        )
        output.write_text(page)
        print(f"wrote {output}")


def _bulk() -> str:
    """Bulk stream reads (``tests.benchmarks.bulk``), in a fresh process."""
    print("bulk stream reads, 8 to 64 MB", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bulk"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    print(done.stdout)
    return done.stdout.strip()


def _instructions_only(
    shapes: list[str],
    contenders: list[str],
    variants: dict[str, str],
    json_path: Path | None,
) -> None:
    """``--instructions``: count, print the table, nothing else."""
    if _instructions.valgrind() is None:
        raise SystemExit(_instructions.MISSING)
    print(
        f"instructions per unit (callgrind), {len(shapes)} shapes x "
        f"{len(contenders)} contenders, two at a time",
        flush=True,
    )
    started = time.monotonic()
    counts = _instructions.count_all(shapes, contenders, variants)
    print(f"({time.monotonic() - started:.0f} s)\n")
    print(instruction_table(counts, contenders))
    if json_path:
        json_path.write_text(json.dumps({"instructions": counts}, indent=1))


if __name__ == "__main__":
    main()
