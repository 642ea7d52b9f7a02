"""Timed runs after warm-up; the suite takes medians over all of them."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

from . import interrupt

#: The fewest runs a figure may have (--quick; a full run takes 35).
MIN_RUNS = 15


@dataclasses.dataclass(frozen=True)
class Repeats:
    """``runs`` counted runs per figure, spread over ``rounds`` passes of the suite.

    Passing over every method several times, instead of finishing one method
    before starting the next, lets a slow spell of a shared machine hit the
    figure and its baseline alike.
    """

    warmup: int
    runs: int
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.runs < MIN_RUNS:
            raise ValueError(f"at least {MIN_RUNS} runs are needed, got {self.runs}")
        if self.warmup < 1:
            raise ValueError(f"at least one warm-up run is needed, got {self.warmup}")
        if not 1 <= self.rounds <= self.runs:
            raise ValueError(f"rounds must be between 1 and runs, got {self.rounds}")

    @property
    def per_round(self) -> int:
        return -(-self.runs // self.rounds)


def timed_alternating(
    fns: dict[str, Callable[[], None]],
    warmup: int,
    runs: int,
    after: dict[str, Callable[[], None]] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each call of each function, calling them in turn, run after run.

    Alternating a figure with its baseline makes both see the same moments
    of a busy machine. ``after[name]`` runs untimed after each call of
    ``fns[name]`` (teardown of what it made). The first ``warmup`` turns are
    not counted.
    """
    after = after or {}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + runs):
        for name, fn in fns.items():
            start = time.perf_counter_ns()
            fn()
            elapsed = time.perf_counter_ns() - start
            if name in after:
                after[name]()
            if i >= warmup:
                samples[name].append(elapsed / 1e9)
        interrupt.check()
    return samples


def timed_runs(
    fn: Callable[[], None],
    warmup: int,
    runs: int,
    after: Callable[[], None] | None = None,
) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn`` after ``warmup`` uncounted ones."""
    teardown = {"fn": after} if after is not None else None
    return timed_alternating({"fn": fn}, warmup, runs, teardown)["fn"]


def timed_bracketed(
    fn: Callable[[], None],
    baseline: Callable[[], None],
    warmup: int,
    runs: int,
) -> tuple[list[float], list[float]]:
    """``runs`` back-to-back calls of ``fn``, between two halves of ``runs`` baseline calls.

    Back to back, so that a latency figure is not charged for what a 33 MB
    baseline copy does to the caches and to an idle reader's CPU in between;
    bracketed, so that the baseline sees the same stretch of a busy machine.
    """
    half = -(-runs // 2)
    before = timed_runs(baseline, 1, half)
    samples = timed_runs(fn, warmup, runs)
    after = timed_runs(baseline, 0, runs - half) if runs > half else []
    return samples, before + after


def batched(fn: Callable[[], None], ops: int) -> Callable[[], None]:
    """``fn`` called ``ops`` times back to back: time it and divide by ``ops``."""

    def batch() -> None:
        for _ in range(ops):
            fn()

    return batch
