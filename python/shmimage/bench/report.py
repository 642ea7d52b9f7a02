"""The table, the JSON document and the plot."""
from __future__ import annotations

import json
import statistics
from typing import Any

from .figures import Figure
from .measure import MEMCPY, ROUND_TRIPS
from .suite import Results

COLUMNS = ("figure", "size", "shmimage", "baseline", "ratio", "target", "met?")


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit != "s":
        return f"{value:.2f} {unit}"
    for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value * 1e9:.3g} ns"


def _row(figure: Figure) -> tuple[str, ...]:
    baseline = f"{figure.baseline_name} {format_value(figure.baseline, figure.unit)}"
    if figure.skipped:
        return (figure.name, figure.size or "", format_value(figure.value, figure.unit),
                figure.baseline_name, "-", figure.target_label(), f"skipped: {figure.skipped}")
    ratio = figure.ratio
    return (figure.name, figure.size or "", format_value(figure.value, figure.unit), baseline,
            "-" if ratio is None else f"{ratio:.3g}x", figure.target_label(), figure.met)


def table(figures: list[Figure], skipped: dict[str, str]) -> str:
    rows = [COLUMNS] + [_row(f) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for name, reason in skipped.items():
        lines.append(f"skipped: {name}: {reason}")
    return "\n".join(lines)


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _row(f)) + " |" for f in figures]
    return "\n".join(lines)


def document(figures: list[Figure], results: Results, settings: dict[str, Any],
             machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": machine,
        "settings": settings,
        "skipped": results.skipped,
        "failures": results.failures,
        "seconds": results.seconds,
        "runs": {key: len(runs) for key, runs in results.samples.items()},
        "memory_bytes": results.memory,
        "figures": [f.to_json() for f in figures],
    }


def write_json(path: str, doc: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=2)
        out.write("\n")


def plot(path: str, results: Results, sizes: list[str], machine_line: str) -> None:
    """Round-trip time per method, grouped by frame size (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ["numpy.copyto (memcpy)"] + list(ROUND_TRIPS)
    seconds = results.seconds
    for size in sizes:  # the memcpy of a size: all its runs beside that size's round trips
        runs = [t for key, ts in results.samples.items()
                if key.startswith(MEMCPY + "rt/") and key.endswith(f"/{size}") for t in ts]
        if runs:
            seconds[f"memcpy/{size}"] = statistics.median(runs)
    keys = {"numpy.copyto (memcpy)": "memcpy"} | {m: f"rt/{m}" for m in ROUND_TRIPS}
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(13, 6))
    for i, method in enumerate(methods):
        xs, ys = [], []
        for j, size in enumerate(sizes):
            value = seconds.get(f"{keys[method]}/{size}")
            if value is not None:
                xs.append(j + (i - len(methods) / 2 + 0.5) * width)
                ys.append(value * 1e3)
        ax.bar(xs, ys, width, label=method)
    ax.set_xticks(range(len(sizes)), [f"{s} RGBA" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("round trip, median (ms, log scale)")
    ax.set_title(f"publish -> other process has the frame -> ack\n{machine_line}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
