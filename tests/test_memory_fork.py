"""Fork safety: a forked child that inherited a segment only lets go of its copy."""
from __future__ import annotations

import multiprocessing
import os

import pytest
from shmimage import NotFoundError, SharedMemory
from workers_memory import (
    WAIT,
    finish,
    forked_child,
    forked_hold,
    has_pattern,
    shm_path,
    write_pattern,
)


@pytest.mark.parametrize("action", ["exit", "detach", "dealloc", "write", "lock"])
def test_forked_child_leaves_parent_segment_alone(procs, unique_key, action: str) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(4096)
    write_pattern(shm, 20)
    path = shm_path(shm.native_key)
    finish(procs.start(forked_child, [shm], action, 20, method="fork"))
    assert shm.is_attached
    assert os.path.exists(path)
    assert has_pattern(shm, 21 if action == "write" else 20)
    write_pattern(shm, 22)
    assert shm.lock(timeout=WAIT)
    shm.unlock()
    with SharedMemory(key) as other:
        other.attach()
        assert has_pattern(other, 22)
    assert shm.detach()
    assert not os.path.exists(path)


@pytest.mark.parametrize("action", ["exit", "detach", "dealloc", "lock-held"])
def test_forked_child_of_a_lock_holder(procs, unique_key, action: str) -> None:
    """The parent holds the lock when it forks: the child just lets go of its copy."""
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(64)
    write_pattern(shm, 30)
    assert shm.lock()
    try:
        finish(procs.start(forked_child, [shm], action, 30, method="fork"))
    finally:
        shm.unlock()
    assert shm.lock(timeout=0) is True
    assert shm.owner_died is False
    shm.unlock()
    assert has_pattern(shm, 30)
    assert shm.detach()


def test_forked_child_outliving_the_parents_detach(procs, unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(64)
    fork = multiprocessing.get_context("fork")
    ready, stop = fork.Event(), fork.Event()
    child = procs.start(forked_hold, [shm], ready, stop, method="fork")
    assert ready.wait(WAIT)
    assert shm.detach()
    stop.set()
    finish(child)
    # Nobody is attached any more: the name is free, and gone once touched.
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))
