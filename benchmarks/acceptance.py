"""The repository's performance check: ``shmimage bench --json`` output against the targets.

    python -m shmimage bench --json bench.json
    python benchmarks/acceptance.py bench.json [--markdown] [--strict]

Prints, per target and frame size, the figure's ratio, its 95% bootstrap
interval and the verdict: met, met within noise, short (or skipped, with the
bench's reason, or not measured, with what the suite lacks). Exit status: 0;
1 with ``--strict`` when a target is short; 2 when the document is not what
the bench writes or a target's figure is absent from a run that should have it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from shmimage.bench.report import format_value
from targets import MIN_RUNS, NOT_MEASURED, SHORT, SKIPPED, TARGETS, Target

FORMAT = 2
#: Figures of CPU time per trip: ``cpu/<id of the wall-time figure>``.
CPU_PREFIX = "cpu/"
COLUMNS = ("figure", "size", "shmimage", "baseline", "ratio", "95% interval", "target",
           "verdict")


class NotABenchDocument(ValueError):
    """The JSON is not what ``shmimage bench --json`` writes."""


@dataclasses.dataclass
class Row:
    target: Target
    size: str | None
    figure: dict[str, Any] | None
    verdict: str

    def cells(self) -> tuple[str, ...]:
        """The figure beside its baseline, their ratio and interval, the target, the verdict."""
        f = self.figure or {}
        unit = f.get("unit", "s")
        value = format_value(f.get("value"), unit)
        baseline = f"{f.get('baseline_name', '-')} {format_value(f.get('baseline'), unit)}"
        ratio, interval = f.get("ratio"), f.get("interval")
        if self.figure is None or self.target.op == "<":
            ratio = interval = None  # a value target: the value is the figure
        return (self.target.text, self.size or "", value, baseline if f else "-",
                "-" if ratio is None else f"{ratio:.3g}x",
                "-" if not interval else f"{interval[0]:.3g}-{interval[1]:.3g}x",
                self.target.label(), self.verdict)


def load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as src:
        doc = json.load(src)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "figures" not in doc:
        raise NotABenchDocument(f"{path}: not a shmimage bench --json document "
                                f"(format {FORMAT})")
    return doc


def judge(doc: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """A row per target and size, and the targets whose figure the run lacks."""
    sizes: list[str | None] = list(doc["settings"]["sizes"]) + [None]
    figures = {(f["id"], f["size"]): f for f in doc["figures"]}
    rows, absent = [], []
    for target in TARGETS:
        if target.missing:
            rows.append(Row(target, None, None, f"{NOT_MEASURED}: {target.missing}"))
            continue
        for size in filter(target.applies_to, sizes):
            figure = figures.get((target.figure_id, size))
            if figure is None:
                absent.append(f"{target.figure_id} at {size or 'no size'}")
                continue
            verdict = target.verdict(figure)
            if verdict == SKIPPED:
                verdict = f"{SKIPPED}: {figure['skipped']}"
            rows.append(Row(target, size, figure, verdict))
    return rows, absent


def table(rows: Sequence[Row]) -> str:
    cells = [COLUMNS] + [row.cells() for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def facts(doc: dict[str, Any]) -> str:
    """When, on what and from which commit the run was made, and how busy the machine was."""
    m = doc["machine"]

    def known(key: str) -> Any:
        return "unknown" if m.get(key) is None else m[key]

    commit = known("commit")
    return (f"run {known('date')} from commit {commit}, on {known('cpu')} with "
            f"{known('cores')} cores, load average {known('load_average_1min')} at start "
            f"and {known('load_average_1min_end')} at the end")


def notes(rows: Sequence[Row]) -> list[str]:
    """What a judged figure's note says (how often a peer stalled, ...)."""
    return [f"note: {row.target.text}: {row.figure['note']}" for row in rows
            if row.figure and row.figure.get("note")]


def cpu_lines(doc: dict[str, Any]) -> list[str]:
    """CPU time per round trip (or per streamed frame) beside the wall-time targets:
    spinning cannot win unseen."""
    lines = []
    for f in doc["figures"]:
        if not f["id"].startswith(CPU_PREFIX) or f.get("skipped") or f.get("ratio") is None:
            continue
        where = f" at {f['size']}" if f["size"] else " per frame, all 5 processes"
        lines.append(f"  {f['id'][len(CPU_PREFIX):]}{where}: shmimage "
                     f"{f['value'] * 1e6:.1f} us, {f['baseline_name']} "
                     f"{f['baseline'] * 1e6:.1f} us ({f['ratio']:.3g}x)")
    return ["CPU time per round trip, both processes (own wake-ups):"] + lines if lines else []


def summary(rows: Sequence[Row], doc: dict[str, Any]) -> list[str]:
    counts: dict[str, int] = {}
    for row in rows:
        kind = row.verdict.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    lines = [", ".join(f"{n} {kind}" for kind, n in counts.items())]
    fewest = min((f["runs"] for f in doc["figures"] if not f["skipped"] and f["runs"] > 1),
                 default=0)
    if fewest < MIN_RUNS:
        lines.append(f"note: figures of as few as {fewest} runs (a --quick run); verdicts "
                     f"count from {MIN_RUNS} runs per figure, as a full run takes")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/acceptance.py", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json", help="what `shmimage bench --json` wrote")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (for the README)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is short")
    args = p.parse_args(argv)
    try:
        doc = load(args.json)
        rows, absent = judge(doc)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"acceptance: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(facts(doc))
    print(markdown(rows) if args.markdown else table(rows))
    for line in notes(rows):
        print(line)
    for line in cpu_lines(doc):
        print(line)
    print("\n".join(summary(rows, doc)))
    if absent:
        print("acceptance: no figure for " + "; ".join(absent), file=sys.stderr)
        return 2
    return 1 if args.strict and any(row.verdict == SHORT for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
