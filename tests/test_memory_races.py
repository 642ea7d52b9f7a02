"""Races between processes over one name: exactly one creator, nothing left over."""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from shmimage import NotFoundError, SharedMemory
from shmimage.memory import collect_garbage, list_segments
from workers_memory import WAIT, churn, create_and_hold, finish, race_create, shm_path

ctx = multiprocessing.get_context("spawn")



def race(procs: Any, key: str, racers: int) -> list[str]:
    """Start `racers` creators at once; their answers, once the winner has left."""
    start, stop = ctx.Event(), ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(racers)]
    children = [procs.start(race_create, key, start, stop, w) for _, w in pipes]
    for _, w in pipes:
        w.close()
    start.set()
    answers = []
    for r, _ in pipes:
        assert r.poll(WAIT), "a racer did not answer"
        answers.append(r.recv())
    stop.set()
    for child in children:
        finish(child)
    return answers


@pytest.mark.parametrize("racers", [2, 4])
def test_exactly_one_creator_wins(procs, unique_key, racers: int) -> None:
    key = unique_key()
    answers = race(procs, key, racers)
    assert sorted(answers) == ["created"] + ["exists"] * (racers - 1)
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))


def test_exactly_one_creator_wins_over_a_stale_segment(procs, unique_key) -> None:
    key = unique_key()
    ready, stop = ctx.Event(), ctx.Event()
    holder = procs.start(create_and_hold, key, 64, 1, False, ready, stop)
    assert ready.wait(WAIT)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(WAIT)
    answers = race(procs, key, 4)
    assert sorted(answers) == ["created", "exists", "exists", "exists"]
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))


def run_churn(
    procs: Any, key: str, during: Callable[[], object] | None = None
) -> dict[str, int]:
    """Three churners on one name; `during()` runs in this process meanwhile."""
    churners, rounds = 3, 300
    start = ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(churners)]
    children = [procs.start(churn, key, rounds, start, w) for _, w in pipes]
    for _, w in pipes:
        w.close()
    start.set()
    totals = {"created": 0, "attached": 0, "missed": 0}
    for r, _ in pipes:
        while during is not None and not r.poll(0):
            during()
        assert r.poll(WAIT * 2), "a churner did not finish"
        for name, count in r.recv().items():
            totals[name] += count
    for child in children:
        finish(child)
    assert sum(totals.values()) == churners * rounds
    assert totals["created"] > 0
    return totals


def test_create_attach_detach_churn(procs, unique_key) -> None:
    key = unique_key()
    run_churn(procs, key)
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()


def test_listing_and_gc_during_churn(procs, unique_key) -> None:
    """ls and gc never take a live segment away from its users."""
    key = unique_key()

    def look_around() -> None:
        collect_garbage()
        list_segments()

    run_churn(procs, key, during=look_around)
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))
