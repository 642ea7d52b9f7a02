"""Runs the measurements round after round, with progress."""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import sys
import time
from typing import TextIO

from . import across_hosts, interrupt, placement, sandbox
from .frames import SIZES, parse_size
from .measure import FAN_OUT, Measurements, Step
from .methods_peers import pyshmem_lock_dir
from .pool import ReaderPool
from .timing import Repeats


@dataclasses.dataclass
class Settings:
    sizes: list[str]
    repeats: Repeats
    net: across_hosts.Plan = dataclasses.field(
        default_factory=lambda: across_hosts.Plan.make(quick=False))
    #: The writer's and its reader's CPUs in the round trips; None lets the scheduler choose.
    cpus: tuple[int, int] | None = None

    @classmethod
    def make(cls, quick: bool, sizes: list[str] | None = None,
             runs: int | None = None, placement_choice: str = "two-cpus") -> Settings:
        chosen = sizes or (["3840x2160"] if quick else list(SIZES))
        for size in chosen:
            parse_size(size)
        default_runs, warmup, rounds = (15, 2, 3) if quick else (35, 3, 5)
        runs = runs or default_runs
        return cls(chosen, Repeats(warmup=warmup, runs=runs, rounds=min(rounds, runs)),
                   across_hosts.Plan.make(quick), placement.pair(placement_choice))


@dataclasses.dataclass
class Results:
    """Timed runs in seconds by key (``rt/<method>/<size>``, ...), plus memory probes."""

    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    memory: dict[str, int] = dataclasses.field(default_factory=dict)
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Runs whose peer stalled and was replaced (not counted), by key: ``streams/iceoryx2``.
    stalls: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def seconds(self) -> dict[str, float]:
        """The figure of each key: the median of all its runs."""
        return {key: statistics.median(runs) for key, runs in self.samples.items() if runs}


class Progress:
    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.start = time.monotonic()

    def step(self, label: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        print(f"[{self.done:>3}/{self.total}] {elapsed:6.1f}s  {label} ...",
              file=self.stream, flush=True)


class Suite:
    def __init__(self, settings: Settings, skipped: dict[str, str]) -> None:
        self.settings = settings
        self.results = Results(skipped=dict(skipped))
        self._pool: ReaderPool | None = None
        repeats = settings.repeats
        self.measure = Measurements(self.pool, repeats.warmup, repeats.per_round,
                                    self.results.skipped, self._fail_key, settings.net,
                                    self.results.stalls)

    def pool(self) -> ReaderPool:
        if self._pool is None:
            self._pool = ReaderPool(FAN_OUT)
        return self._pool

    def run(self, progress_stream: TextIO = sys.stderr) -> Results:
        steps = self.measure.plan(self.settings.sizes)
        rounds = self.settings.repeats.rounds
        timed = [s for s in steps if not (s.once or s.sustained)]  # the rest: last round
        progress = Progress(rounds * len(timed) + len(steps) - len(timed), progress_stream)
        with pyshmem_lock_dir(), sandbox.isolated():
            try:
                for n in range(1, rounds + 1):
                    for step in steps if n == rounds else timed:
                        interrupt.check()
                        progress.step(f"round {n}/{rounds}: {step.label}")
                        self._run_step(step, progress_stream)
            finally:
                if self._pool is not None:
                    self._pool.close()
        return self.results

    def _run_step(self, step: Step, stream: TextIO) -> None:
        failures = self.results.failures
        if step.needs in self.results.skipped or all(k in failures for k in step.keys):
            return
        try:
            with self._placed(step):
                got = step.run()
        except Exception as exc:  # noqa: BLE001 - one broken method must not end the suite
            self._fail(step, exc, stream)
            if self._pool is not None:
                self._pool.close()  # its Pipes may be out of step: start afresh
                self._pool = None
            return
        if step.once:
            self.results.memory.update(got)
            return
        for key, runs in got.items():
            self.results.samples.setdefault(key, []).extend(runs)

    def _placed(self, step: Step) -> contextlib.AbstractContextManager[None]:
        cpus = self.settings.cpus
        if cpus is None or not step.placed:
            return contextlib.nullcontext()
        reader = self.pool().readers[0]  # the pool first: its processes inherit this one's CPUs
        return placement.pinned(cpus, reader)

    def _fail(self, step: Step, exc: BaseException, stream: TextIO) -> None:
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
        for key in step.keys:
            self._fail_key(key, reason)
        print(f"    failed: {reason}", file=stream, flush=True)

    def _fail_key(self, key: str, reason: str) -> None:
        self.results.failures[key] = reason
        self.results.samples.pop(key, None)
