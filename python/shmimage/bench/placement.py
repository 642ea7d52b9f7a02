"""Where a round trip runs: the writer and its reader each on a CPU of its own.

A strict ping-pong lets the scheduler put both processes on one CPU or on
two, and it may change its mind during a run. The two placements cost very
different amounts (on one CPU a frame the writer has just copied is still in
that CPU's caches when the reader copies it out), so one method could be
measured on one CPU and the next on two. Pinning the writer and the reader
measures every method the same way: on two CPUs by default, as a pipeline
whose stages run at once has them, or both on one CPU.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Protocol


class Pinnable(Protocol):
    def pin(self, cpus: set[int]) -> set[int]: ...


#: ``--placement`` choices: two CPUs, one CPU for both, or no pinning.
CHOICES = ("two-cpus", "one-cpu", "scheduler")


def pair(choice: str = "two-cpus") -> tuple[int, int] | None:
    """The writer's and the reader's CPU for ``choice``, or None when the scheduler
    places them (asked for, or this system cannot pin, or two CPUs were asked of one)."""
    if choice not in CHOICES:
        raise ValueError(f"placement must be one of {CHOICES}, got {choice!r}")
    if choice == "scheduler" or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if choice == "one-cpu":
        return (allowed[0], allowed[0])
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def pin(cpus: set[int]) -> set[int]:
    """Restrict this process to ``cpus``; returns what it was allowed before."""
    before = set(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus)
    return before


@contextlib.contextmanager
def pinned(cpus: tuple[int, int] | None, reader: Pinnable) -> Iterator[None]:
    """This process on ``cpus[0]`` and ``reader`` on ``cpus[1]`` for the block."""
    if cpus is None:
        yield
        return
    writer_before = pin({cpus[0]})
    try:
        reader_before = reader.pin({cpus[1]})
        yield
        # After a failure the reader's Pipe may be out of step: its pool is replaced.
        reader.pin(reader_before)
    finally:
        pin(writer_before)
