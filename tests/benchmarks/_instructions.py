"""
Instructions per unit, counted by callgrind: the same count on every run
(to within ~0.5%), whatever else the machine is doing.

Each shape and contender runs once, in a fresh process under ``valgrind
--tool=callgrind --dump-before=getpgrp``: ``shape_worker`` runs a segment of
``N1`` units and one of ``N2`` units, each between two marks, and callgrind
writes one dump per segment. Per unit is
``(Ir(N2 units) - Ir(N1 units)) / (N2 - N1)``: whatever a segment costs
once (its first and last reactor turns, the collection before it) cancels
out, and so do the imports and start-up outside the segments. Every
contender runs on the same Python binary (``sys.executable``). Two
processes run at a time.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from ._shapes import SHAPES
from .shape_worker import MARK_FUNCTION

ROOT = Path(__file__).resolve().parents[2]

MISSING = (
    "Counting instructions needs valgrind (callgrind), which is not installed "
    "here. Install it, then run again:\n"
    "    sudo apt-get install valgrind     # Debian, Ubuntu\n"
    "    sudo dnf install valgrind         # Fedora\n"
    "(Wall and CPU time alone: leave out --instructions and pass --quick.)"
)

_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def valgrind() -> str | None:
    """The valgrind executable, or None if it is not installed."""
    return shutil.which("valgrind")


def count(
    shape: str, contender: str, variants: dict[str, str], counts: tuple[int, int]
) -> dict[str, Any]:
    """
    Run one shape's contender under callgrind: the instructions of each of
    its two segments, and per unit. ``contender`` may be ``cleanconn[NAME]``,
    the cleanconn in ``variants[NAME]``.
    """
    executable = valgrind()
    if executable is None:
        raise SystemExit(MISSING)
    env = dict(os.environ)
    env.pop("CLEANCONN_BENCH_PATH", None)
    # The same string hashes on every run: set and dict layouts repeat.
    env["PYTHONHASHSEED"] = "0"
    name = contender
    if "[" in contender:
        name, variant = contender.rstrip("]").split("[")
        env["CLEANCONN_BENCH_PATH"] = variants[variant]
    elif os.environ.get("CLEANCONN_BENCH_PATH"):
        env["CLEANCONN_BENCH_PATH"] = os.environ["CLEANCONN_BENCH_PATH"]
    with tempfile.TemporaryDirectory(prefix="cleanconn-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [
                *_no_aslr(),
                executable,
                "--tool=callgrind",
                f"--dump-before={MARK_FUNCTION}",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "tests.benchmarks.shape_worker",
                shape,
                name,
                *map(str, counts),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"callgrind run of {shape} {contender} failed:\n{done.stderr[-4000:]}"
            )
        # Dump 1 is the start-up and warm-up; dumps 2 and 3 the segments.
        segments = [_total(Path(f"{out}.{i}")) for i in (2, 3)]
    low, high = counts
    return {
        "shape": shape,
        "contender": contender,
        "counts": list(counts),
        "ir": segments,
        "per_unit": (segments[1] - segments[0]) / (high - low),
    }


@cache
def _no_aslr() -> list[str]:
    """
    ``setarch -R``, if there is one: the same addresses on every run, so that
    hashes of objects (by address), and so dict and set layouts, repeat.
    Counts then repeat to within ~0.5% (a different environment still
    moves the stack); with address randomisation they move by ~1%.
    """
    setarch = shutil.which("setarch")
    if setarch is None:
        return []
    probe = subprocess.run(
        [setarch, platform.machine(), "-R", "true"], capture_output=True, check=False
    )
    return [setarch, platform.machine(), "-R"] if probe.returncode == 0 else []


def _total(dump: Path) -> int:
    found = _TOTAL.search(dump.read_bytes())
    if found is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(found.group(1))


def count_all(
    shapes: list[str],
    contenders: list[str],
    variants: dict[str, str],
    jobs: int = 2,
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every shape and contender, ``jobs`` at a time; by shape, then contender."""
    work = [(s, c) for s in shapes for c in contenders]
    results: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in shapes}

    def one(item: tuple[str, str]) -> dict[str, Any]:
        shape, contender = item
        result = count(shape, contender, variants, SHAPES[shape].counted)
        if progress:
            print(
                f"  instructions: {shape} {contender}: "
                f"{result['per_unit']:,.0f} Ir/{SHAPES[shape].unit}",
                flush=True,
            )
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(one, work):
            results[result["shape"]][result["contender"]] = result
    return results
