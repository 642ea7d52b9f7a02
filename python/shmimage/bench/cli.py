"""``shmimage bench [--quick] [--json OUT] [--plot OUT.png]``."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import interrupt, machine, optional, placement, report
from .build import build_figures
from .frames import make_frame, parse_size
from .measure import WAKE_TRIPS, ZERO_COPY_TRIPS, copy_trips, wake_trips
from .suite import Settings, Suite
from .timing import MIN_RUNS


def _size(text: str) -> str:
    try:
        height, width = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{width}x{height}"


def _runs(text: str) -> int:
    try:
        runs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if runs < MIN_RUNS:
        raise argparse.ArgumentTypeError(f"at least {MIN_RUNS} runs, got {runs}")
    return runs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shmimage bench",
        description="Benchmark shmimage against memcpy, the standard library and its peers: "
                    "each figure beside its baseline, their ratio and its 95% interval.",
    )
    p.add_argument("--quick", action="store_true",
                   help="the 3840x2160 frame only, fewer repeats")
    p.add_argument("--json", metavar="OUT", help="also write every figure as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="draw the round trips (needs matplotlib)")
    p.add_argument("--size", dest="sizes", action="append", type=_size, metavar="WxH",
                   help="frame size to measure instead of the defaults (repeatable)")
    p.add_argument("--runs", type=_runs, help=f"counted runs per figure (>= {MIN_RUNS})")
    p.add_argument("--placement", choices=placement.CHOICES, default=placement.CHOICES[0],
                   help="where a round trip's writer and reader run: each on a CPU of its "
                        "own (the default), both on one CPU, or wherever the scheduler "
                        "puts them")
    p.add_argument("--markdown", action="store_true",
                   help="print a README results section (Markdown table) instead")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark suite and report it: ``shmimage bench`` and ``python -m shmimage.bench``.

    Prints progress on stderr, then the table (figure, baseline, ratio, 95%
    bootstrap interval) on stdout; writes the JSON and the plot when asked.

    Parameters
    ----------
    argv : sequence of str, optional
        The command's arguments (``--quick``, ``--json OUT``, ``--plot OUT.png``,
        ``--size WxH``, ``--runs N``, ``--placement P``, ``--markdown``); ``sys.argv[1:]``
        when None.

    Returns
    -------
    int
        The exit status: 0, 1 when an output cannot be written, 130 when
        interrupted (nothing is left behind).

    Raises
    ------
    SystemExit
        On a usage error (status 2) or ``--help`` (status 0), from argparse.

    Examples
    --------
    >>> from shmimage.bench import main
    >>> main(["--quick", "--json", "bench.json"])  # doctest: +SKIP
    0
    """
    args = parser().parse_args(argv)
    skipped = optional.missing()
    problem = _output_problem(args, skipped)
    if problem:
        print(f"shmimage bench: {problem}", file=sys.stderr)
        return 1
    settings = Settings.make(args.quick, args.sizes, args.runs, args.placement)
    info = machine.describe()
    print(f"shmimage bench on {machine.one_line(info)}", file=sys.stderr, flush=True)
    try:
        with interrupt.deferred():
            results = Suite(settings, skipped).run()
    except KeyboardInterrupt:
        print("shmimage bench: interrupted; nothing left behind", file=sys.stderr)
        return 130
    info = machine.finished(info)
    figures = build_figures(results, settings.sizes)
    if args.markdown:
        print(report.markdown_section(figures, skipped, machine.one_line(info),
                                      _method_line(settings), args.plot))
    else:
        print(f"machine: {machine.one_line(info)}")
        print(_method_line(settings))
        print(report.table(figures, skipped))
    warning = machine.busy_warning(info)
    if warning:
        print(warning)
    try:
        if args.json:
            doc = report.document(figures, results, _settings_json(settings) | {
                "method": _method_line(settings)}, info)
            report.write_json(args.json, doc)
        if args.plot:
            report.plot(args.plot, results, settings.sizes, machine.one_line(info))
    except OSError as exc:
        print(f"shmimage bench: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _output_problem(args: argparse.Namespace, skipped: dict[str, str]) -> str | None:
    """Say so before a long run, not after it, when an output cannot be written."""
    if args.plot and "matplotlib" in skipped:
        return f"--plot needs matplotlib: {optional.INSTALL_HINT}"
    for path in filter(None, (args.json, args.plot)):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"cannot write {path}: no directory {folder}"
        if os.path.isdir(path):
            return f"cannot write {path}: it is a directory"
    return None


def _settings_json(settings: Settings) -> dict[str, object]:
    repeats = settings.repeats
    return {"sizes": settings.sizes, "warmup_per_round": repeats.warmup,
            "rounds": repeats.rounds, "runs": repeats.per_round * repeats.rounds,
            "wake_trips_per_run": {size: _wake_trips(size) for size in settings.sizes},
            "cpus": list(settings.cpus) if settings.cpus else None}


def _wake_trips(size: str) -> dict[str, int]:
    nbytes = make_frame(*parse_size(size)).nbytes
    return {name: wake_trips(name, nbytes) for name in WAKE_TRIPS}


def _trips_clause(settings: Settings) -> str:
    copies = ", ".join(f"{copy_trips(make_frame(*parse_size(size)).nbytes)} at {size}"
                       for size in settings.sizes)
    return (f"a run by own wake-ups is {ZERO_COPY_TRIPS} round trips of the zero-copy "
            f"methods, {copies} of those that copy")


def _method_line(settings: Settings) -> str:
    repeats = settings.repeats
    return (f"each figure: the median of {repeats.per_round * repeats.rounds} runs "
            f"({repeats.rounds} rounds over every method, {repeats.warmup} warm-up runs each "
            f"time); {_trips_clause(settings)}; {_placement_clause(settings)}; "
            "each ratio with its 95% bootstrap interval")


def _placement_clause(settings: Settings) -> str:
    if settings.cpus is None:
        return "the scheduler placed the writer and its reader"
    writer, reader = settings.cpus
    if writer == reader:
        return f"the writer and its reader both ran on CPU {writer}"
    return f"the writer ran on CPU {writer} and its reader on CPU {reader}"
