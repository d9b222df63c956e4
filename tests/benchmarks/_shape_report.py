"""
The per-shape tables (instructions per unit; wall and CPU time per unit)
and the goals judged on instructions.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from ._shapes import HAND, SHAPES

#: ``{shape: {contender: result}}``: one callgrind count each.
Counts = Mapping[str, Mapping[str, Mapping[str, Any]]]
#: ``{shape: {contender: [result of each round]}}``: timed runs.
Timed = Mapping[str, Mapping[str, list[Mapping[str, Any]]]]


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "-"


def _per_unit(counts: Counts, shape: str, contender: str) -> float | None:
    result = counts.get(shape, {}).get(contender)
    return None if result is None else float(result["per_unit"])


def instruction_table(counts: Counts, contenders: list[str]) -> str:
    """Instructions per unit, each contender's ratio to the hand-written."""
    others = [c for c in contenders if c != HAND]
    head = "| shape | unit | hand-written (Ir) |"
    rule = "| --- | --- | ---: |"
    for contender in others:
        head += f" {contender} (Ir) | ratio |"
        rule += " ---: | ---: |"
    lines = [head, rule]
    for shape in counts:
        base = _per_unit(counts, shape, HAND)
        row = f"| {SHAPES[shape].title} | {SHAPES[shape].unit} | {_number(base)} |"
        for contender in others:
            value = _per_unit(counts, shape, contender)
            row += f" {_number(value)} | {_ratio(value, base)} |"
        lines.append(row)
    return "\n".join(lines)


def _number(value: float | None, scale: float = 1.0, digits: int = 0) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def _median(results: list[Mapping[str, Any]], key: str) -> float | None:
    values = [r[key][0] / r["counts"][0] for r in results]
    return statistics.median(values) if values else None


def time_summary(timed: Timed) -> dict[str, dict[str, dict[str, float]]]:
    """Medians over rounds of wall and CPU seconds per unit, by shape and
    contender, with ``wall_low`` / ``wall_high``: the round-by-round
    spread of the ratio to the hand-written."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for shape, by in timed.items():
        base = by.get(HAND, [])
        for contender, results in by.items():
            row: dict[str, float] = {}
            for key in ("wall", "cpu"):
                value = _median(results, key)
                if value is not None:
                    row[key] = value
            if contender != HAND and base:
                ratios = sorted(
                    (a["wall"][0] / a["counts"][0]) / (b["wall"][0] / b["counts"][0])
                    for a, b in zip(results, base, strict=False)
                )
                if ratios:
                    row["wall_low"], row["wall_high"] = ratios[0], ratios[-1]
            summary.setdefault(shape, {})[contender] = row
    return summary


def time_table(timed: Timed, contenders: list[str]) -> str:
    """Wall and CPU microseconds per unit; the wall ratio's round spread."""
    summary = time_summary(timed)
    lines = [
        "| shape | contender | wall (us/unit) | round by round | CPU (us/unit) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for shape, by in summary.items():
        base = by.get(HAND, {})
        for contender in contenders:
            row = by.get(contender)
            if row is None:
                continue
            wall, cpu = row.get("wall"), row.get("cpu")
            spread = "-"
            if "wall_low" in row:
                spread = f"{row['wall_low']:.2f}x to {row['wall_high']:.2f}x"
            name = "hand-written" if contender == HAND else contender
            lines.append(
                f"| {SHAPES[shape].title} | {name} "
                f"| {_number(wall, 1e6)} ({_ratio(wall, base.get('wall'))}) "
                f"| {spread} "
                f"| {_number(cpu, 1e6)} ({_ratio(cpu, base.get('cpu'))}) |"
            )
    return "\n".join(lines)


def instruction_goals(counts: Counts, contender: str = "cleanconn") -> list[str]:
    """One line per shape: met or missed, on instructions per unit."""
    lines = []
    for shape in counts:
        mine = _per_unit(counts, shape, contender)
        base = _per_unit(counts, shape, HAND)
        if mine is None or not base:
            continue
        limit = SHAPES[shape].limit
        ratio = mine / base
        # Judged as shown: to two decimals.
        verdict = "met" if round(ratio, 2) <= limit else "missed"
        lines.append(
            f"- {SHAPES[shape].title}: at most {limit:.2f}x the hand-written "
            f"in instructions per {SHAPES[shape].unit}: **{verdict}** "
            f"({ratio:.2f}x: {mine:,.0f} against {base:,.0f})"
        )
    return lines
