"""The lock survives its holder: killed, exiting, interrupted, detached under."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time

import pytest
from shmimage import LockError, SharedMemory
from workers_memory import (
    WAIT,
    detach_while_another_thread_waits,
    finish,
    has_pattern,
    hold_lock,
    kill,
    lock_and_return,
    lock_through_signals,
    lock_until_interrupted,
    start_ready,
)

spawn = multiprocessing.get_context("spawn")


@contextlib.contextmanager
def blocked_in_lock(procs, shm: SharedMemory, key: str, worker):
    """`worker(key, ready, conn)` started in a child and left blocked in lock()
    while this process holds it: (child, the parent's end of conn). The lock is
    released when the block ends."""
    assert shm.lock()
    ready = spawn.Event()
    parent_end, child_end = spawn.Pipe(duplex=False)
    child = procs.start(worker, key, ready, child_end)
    child_end.close()
    try:
        assert ready.wait(WAIT)
        time.sleep(0.3)  # let it block (if what comes next comes early it still counts)
        yield child, parent_end
    finally:
        shm.unlock()


def test_lock_after_holder_was_killed(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(4096)
        proc, _ = start_ready(procs, hold_lock, key, 9)
        assert shm.lock(timeout=0) is False
        kill(proc)
        assert shm.lock(timeout=1.0) is True
        assert shm.owner_died is True
        assert has_pattern(shm, 9)
        shm.unlock()
        assert shm.lock(timeout=1.0) is True
        assert shm.owner_died is False
        shm.unlock()
        assert shm.owner_died is False


def test_waiter_wakes_when_holder_is_killed(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(4096)
        proc, _ = start_ready(procs, hold_lock, key, 2)
        killer = threading.Timer(0.3, os.kill, (proc.pid, signal.SIGKILL))
        killer.start()
        try:
            assert shm.lock(timeout=WAIT) is True
            assert shm.owner_died is True
            shm.unlock()
        finally:
            killer.join(WAIT)
        proc.join(WAIT)


def test_dead_holder_does_not_make_lock_recursive(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(64)
        proc, _ = start_ready(procs, hold_lock, key, 3)
        kill(proc)
        assert shm.lock(timeout=WAIT)
        with pytest.raises(LockError):
            shm.lock()
        shm.unlock()


def test_holder_that_exits_normally_holding_the_lock(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(64)
        finish(procs.start(lock_and_return, key))
        assert shm.lock(timeout=WAIT) is True
        with shm.data as mv:
            assert mv[0] == 1
        shm.unlock()


def test_blocked_lock_can_be_interrupted(procs, unique_key) -> None:
    """Ctrl+C reaches a process blocked in lock(), as it does in threading.Lock."""
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(64)
        with blocked_in_lock(procs, shm, key, lock_until_interrupted) as (child, parent_end):
            os.kill(child.pid, signal.SIGINT)
            child.join(10)
            still_blocked = child.is_alive()
        assert not still_blocked, "SIGINT did not interrupt a blocking lock()"
        assert parent_end.poll(WAIT) and parent_end.recv() == "interrupted"
        finish(child)


def test_detach_while_another_thread_waits_in_lock(procs, unique_key) -> None:
    """Never a crash: the waiter must not be left blocked on an unmapped mutex."""
    key = unique_key()
    parent_end, child_end = spawn.Pipe(duplex=False)
    child = procs.start(detach_while_another_thread_waits, key, child_end)
    child_end.close()
    child.join(WAIT * 2)
    assert child.exitcode == 0, f"child died with {child.exitcode} (-11 is SIGSEGV)"
    assert parent_end.poll(WAIT)
    outcome = parent_end.recv()
    assert outcome["waiter_alive"] is False, outcome


def test_killed_waiter_leaves_the_lock_intact(procs, unique_key) -> None:
    """A process killed while *waiting* for the lock never owned it."""
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(64)
        with blocked_in_lock(procs, shm, key, lock_until_interrupted) as (child, _keep_open):
            kill(child)
        assert shm.lock(timeout=0) is True
        assert shm.owner_died is False
        shm.unlock()


def test_handled_signals_do_not_end_a_blocking_lock(procs, unique_key) -> None:
    """Handlers run while lock() waits, and the wait goes on afterwards."""
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(64)
        with blocked_in_lock(procs, shm, key, lock_through_signals) as (child, parent_end):
            for _ in range(3):
                os.kill(child.pid, signal.SIGUSR1)
                time.sleep(0.2)
            time.sleep(0.3)
            assert child.is_alive(), "a handled signal ended the child"
            handled_while_blocked = not parent_end.poll(0)
        assert handled_while_blocked, "lock() returned while the parent still held it"
        assert parent_end.poll(WAIT)
        got, calls = parent_end.recv()
        assert got is True
        assert calls >= 1  # signals sent close together may merge into one
        finish(child)


def test_lock_recovers_from_one_dead_holder_after_another(procs, unique_key) -> None:
    """Ten holders in a row die holding the lock; each time it is recovered."""
    key = unique_key()
    fork = multiprocessing.get_context("fork")
    with SharedMemory(key) as shm:
        shm.create(4096)
        for seed in range(10):
            ready, stop = fork.Event(), fork.Event()
            holder = procs.start(hold_lock, key, seed, ready, stop, method="fork")
            assert ready.wait(WAIT)
            kill(holder)
            assert shm.lock(timeout=WAIT) is True
            assert shm.owner_died is True
            assert has_pattern(shm, seed)
            shm.unlock()
        assert shm.lock(timeout=0) is True
        assert shm.owner_died is False
        shm.unlock()
