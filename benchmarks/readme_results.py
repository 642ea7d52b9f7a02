"""The README's benchmark section, generated from a full run's JSON (never written by hand).

    python -m shmimage bench --json bench.json --plot docs/benchmark.png
    python benchmarks/readme_results.py bench.json             # rewrites README.md's section
    python benchmarks/readme_results.py bench.json --print     # prints it instead

The section is what lies between ``<!-- bench-results -->`` and
``<!-- /bench-results -->`` in the README: where and how the run was made,
every figure with its baseline, ratio and 95% interval (the table
``shmimage bench`` prints), then the verdicts of ``acceptance.py`` against the
targets and the CPU time per round trip. Exit status 2 when the JSON is not a
bench document or the README lacks the markers.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import acceptance
from shmimage.bench.figures import Figure
from shmimage.bench.machine import one_line
from shmimage.bench.report import markdown_table

BEGIN, END = "<!-- bench-results -->", "<!-- /bench-results -->"
PLOT = "docs/benchmark.png"


def _figure(d: dict[str, Any]) -> Figure:
    interval = d.get("interval")
    return Figure(d["id"], d["figure"], d["size"], d["value"], d["baseline_name"],
                  d["baseline"], inverse=d.get("ratio_kind") == "baseline/value",
                  unit=d.get("unit", "s"), interval=tuple(interval) if interval else None,
                  runs=d.get("runs", 0), skipped=d.get("skipped"), note=d.get("note"))


def _machine(info: dict[str, Any]) -> str:
    try:
        return one_line(info)
    except KeyError:  # an older document: what it has
        return ", ".join(f"{k} {v}" for k, v in info.items())


def section(doc: dict[str, Any], plot: str | None) -> str:
    """The Markdown between the markers, from a bench JSON document."""
    rows, absent = acceptance.judge(doc)
    if absent:
        raise ValueError("no figure for " + "; ".join(absent))
    method = doc["settings"].get("method", "")
    parts = ["Generated from `shmimage bench --json` by `benchmarks/readme_results.py`.", "",
             f"Machine: {_machine(doc['machine'])}.", "",
             f"This {acceptance.facts(doc)}.", ""]
    if method:
        parts += [method[0].upper() + method[1:] + ".", ""]
    parts += [markdown_table([_figure(f) for f in doc["figures"]]), ""]
    parts += [f"Skipped: {name}: {reason}" for name, reason in doc.get("skipped", {}).items()]
    parts += ["", "Against the project's targets (`benchmarks/acceptance.py`):", "",
              acceptance.markdown(rows), ""]
    parts += [line[0].upper() + line[1:] + "\n" for line in acceptance.notes(rows)]
    cpu = acceptance.cpu_lines(doc)
    if cpu:
        parts += [cpu[0], ""] + [f"- {line.strip()}" for line in cpu[1:]] + [""]
    parts += ["Verdicts: " + "; ".join(acceptance.summary(rows, doc)) + "."]
    if plot:
        parts += ["", f"![round trips per method and frame size]({plot})"]
    return "\n".join(parts).replace("\n\n\n", "\n\n")


def replace_section(text: str, body: str) -> str:
    """`text` with what lies between the markers replaced by `body`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {BEGIN} ... {END} section")
    return text[:start + len(BEGIN)] + "\n" + body + "\n" + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/readme_results.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("json", help="what `shmimage bench --json` wrote (a full run)")
    p.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "..",
                                                    "README.md"))
    p.add_argument("--plot", default=PLOT, help="the plot's path from the README's folder")
    p.add_argument("--print", action="store_true", help="print the section, write nothing")
    args = p.parse_args(argv)
    folder = os.path.dirname(os.path.abspath(args.readme))
    plot = args.plot if os.path.isfile(os.path.join(folder, args.plot)) else None
    try:
        body = section(acceptance.load(args.json), plot)
        if args.print:
            print(body)
            return 0
        with open(args.readme, encoding="utf-8") as src:
            text = replace_section(src.read(), body)
        with open(args.readme, "w", encoding="utf-8") as out:
            out.write(text)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"readme_results: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(f"rewrote the benchmark section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
