"""Segment lifetime and crash recovery: what Qt's POSIX backend gets wrong."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from typing import Any

import pytest
from shmimage import LockError, NotFoundError, SharedMemory
from shmimage.memory import collect_garbage, list_segments
from workers_memory import (
    WAIT,
    attach_and_exit,
    attach_and_hold,
    create_and_hold,
    create_persistent_and_exit,
    detach_while_another_thread_waits,
    forked_child,
    forked_hold,
    has_pattern,
    hold_lock,
    lock_and_return,
    lock_until_interrupted,
    shared_machine,
    shm_path,
    write_pattern,
)

spawn = multiprocessing.get_context("spawn")


def finish(proc: Any) -> None:
    proc.join(WAIT)
    assert not proc.is_alive(), "child did not exit"
    assert proc.exitcode == 0, f"child failed with exit code {proc.exitcode}"


def kill(proc: Any) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(WAIT)
    assert proc.exitcode == -signal.SIGKILL


def start_ready(procs: Any, target: Any, *args: Any) -> tuple[Any, Any]:
    """Start a spawned holder; return it and its stop event once it is ready."""
    ready, stop = spawn.Event(), spawn.Event()
    proc = procs.start(target, *args, ready, stop)
    assert ready.wait(WAIT), "child never got ready"
    return proc, stop


def killed_creator(procs: Any, key: str, size: int = 4096, seed: int = 1) -> str:
    """A child creates the segment and is SIGKILLed; returns the native key."""
    proc, _ = start_ready(procs, create_and_hold, key, size, seed, False)
    kill(proc)
    return SharedMemory(key).native_key


# --- the lock survives a dead holder ---------------------------------------------


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
        assert shm.lock()
        ready = spawn.Event()
        parent_end, child_end = spawn.Pipe(duplex=False)
        child = procs.start(lock_until_interrupted, key, ready, child_end)
        child_end.close()
        try:
            assert ready.wait(WAIT)
            time.sleep(0.3)  # let it block (if the signal comes early it still counts)
            os.kill(child.pid, signal.SIGINT)
            child.join(10)
            still_blocked = child.is_alive()
        finally:
            shm.unlock()
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


# --- every holder killed: the name is free again ---------------------------------


def test_all_holders_killed_then_attach_finds_nothing(procs, unique_key) -> None:
    key = unique_key()
    creator, _ = start_ready(procs, create_and_hold, key, 4096, 1, False)
    attacher, _ = start_ready(procs, attach_and_hold, key)
    kill(creator)
    kill(attacher)
    native = SharedMemory(key).native_key
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()
    assert not os.path.exists(shm_path(native))


def test_all_holders_killed_then_create_succeeds(procs, unique_key) -> None:
    key = unique_key()
    native = killed_creator(procs, key, size=8192, seed=5)
    with SharedMemory(key) as shm:
        shm.create(100)
        assert shm.size == 100
        with shm.data as mv:
            assert bytes(mv) == bytes(100)
    assert not os.path.exists(shm_path(native))


def test_all_holders_killed_then_list_segments_reclaims(procs, unique_key) -> None:
    key = unique_key()
    native = killed_creator(procs, key)
    assert native not in [entry.native_key for entry in list_segments()]
    assert not os.path.exists(shm_path(native))


def test_collect_garbage_removes_only_stale_segments(procs, unique_key) -> None:
    stale_key, live_key, kept_key = unique_key(), unique_key(), unique_key()
    stale = killed_creator(procs, stale_key)
    if shared_machine() and not os.path.exists(shm_path(stale)):
        pytest.skip("another run on this machine reclaimed the stale segment first")
    assert os.path.exists(shm_path(stale)), "nothing should have touched the name yet"
    finish(procs.start(create_persistent_and_exit, kept_key, 64, 1))
    with SharedMemory(live_key) as live:
        live.create(64)
        removed = collect_garbage()
        assert stale in removed
        assert live.native_key not in removed
        assert SharedMemory(kept_key).native_key not in removed
        assert not os.path.exists(shm_path(stale))
        assert os.path.exists(shm_path(live.native_key))
        assert os.path.exists(shm_path(SharedMemory(kept_key).native_key))
        assert stale not in collect_garbage()
    SharedMemory.remove(kept_key)


# --- leaving normally ------------------------------------------------------------


@pytest.mark.parametrize("explicit_detach", [False, True])
def test_attacher_leaving_keeps_the_segment(procs, unique_key, explicit_detach: bool) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(2048)
        write_pattern(shm, 7)
        parent_end, child_end = spawn.Pipe(duplex=False)
        proc = procs.start(attach_and_exit, key, 7, explicit_detach, child_end)
        child_end.close()
        assert parent_end.poll(WAIT) and parent_end.recv() is True
        finish(proc)
        assert os.path.exists(shm_path(shm.native_key))
        assert has_pattern(shm, 7)
        with SharedMemory(key) as other:
            other.attach()
            assert has_pattern(other, 7)


@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_creator_leaving_keeps_the_segment(procs, unique_key, how: str) -> None:
    key = unique_key()
    creator, stop = start_ready(procs, create_and_hold, key, 5000, 8, False)
    shm = SharedMemory(key)
    shm.attach()
    if how == "exits":
        stop.set()
        finish(creator)
    else:
        kill(creator)
    path = shm_path(shm.native_key)
    assert os.path.exists(path)
    assert shm.size == 5000 and has_pattern(shm, 8)
    with SharedMemory(key) as other:
        other.attach()
        write_pattern(other, 9)
    assert has_pattern(shm, 9)
    assert shm.lock(timeout=WAIT)
    shm.unlock()
    assert shm.detach()
    assert not os.path.exists(path)


def test_last_detach_in_another_process_removes(procs, unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(64)
    path = shm_path(shm.native_key)
    child, stop = start_ready(procs, attach_and_hold, key)
    assert shm.detach()
    assert os.path.exists(path)
    stop.set()
    finish(child)
    assert not os.path.exists(path)
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()


# --- persistent segments and remove() --------------------------------------------


def test_persistent_segment_outlives_its_creator(procs, unique_key) -> None:
    key = unique_key()
    finish(procs.start(create_persistent_and_exit, key, 999, 4))
    path = shm_path(SharedMemory(key).native_key)
    assert os.path.exists(path)
    with SharedMemory(key) as shm:
        shm.attach()
        assert shm.size == 999 and has_pattern(shm, 4)
    assert os.path.exists(path)
    assert SharedMemory(key).native_key not in collect_garbage()
    SharedMemory.remove(key)
    assert not os.path.exists(path)
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()
    with pytest.raises(NotFoundError):
        SharedMemory.remove(key)


def test_persistent_segment_survives_a_killed_creator(procs, unique_key) -> None:
    key = unique_key()
    creator, _ = start_ready(procs, create_and_hold, key, 512, 6, True)
    kill(creator)
    with SharedMemory(key) as shm:
        shm.attach()
        assert has_pattern(shm, 6)
    SharedMemory.remove(key)


def test_remove_missing_segment(unique_key) -> None:
    with pytest.raises(NotFoundError) as info:
        SharedMemory.remove(unique_key())
    assert isinstance(info.value, FileNotFoundError)


def test_remove_live_segment(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(256)
        write_pattern(shm, 3)
        path = shm_path(shm.native_key)
        SharedMemory.remove(key)
        assert not os.path.exists(path)
        with pytest.raises(NotFoundError):
            SharedMemory(key).attach()
        # The existing mapping keeps working.
        assert has_pattern(shm, 3)
        write_pattern(shm, 4)
        assert shm.lock(timeout=WAIT)
        shm.unlock()
        # The name is free for a new, independent segment.
        with SharedMemory(key) as fresh:
            fresh.create(256)
            with fresh.data as mv:
                assert bytes(mv) == bytes(256)
        assert has_pattern(shm, 4)
    assert not os.path.exists(path)


def test_remove_while_another_process_is_attached(procs, unique_key) -> None:
    key = unique_key()
    creator, stop = start_ready(procs, create_and_hold, key, 1024, 5, False)
    SharedMemory.remove(key)
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()
    stop.set()
    finish(creator)
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))


# --- fork safety -----------------------------------------------------------------


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


# --- listing -----------------------------------------------------------------------


def test_list_segments_shows_a_live_segment(procs, unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        shm.create(1234)
        entries = [e for e in list_segments() if e.native_key == shm.native_key]
        assert len(entries) == 1
        entry = entries[0]
        assert entry.key == key
        assert entry.size == 1234
        assert entry.persistent is False
        assert entry.attachments == 1
        child, stop = start_ready(procs, attach_and_hold, key)
        (entry,) = [e for e in list_segments() if e.native_key == shm.native_key]
        assert entry.attachments == 2
        stop.set()
        finish(child)


def test_list_segments_shows_persistent(procs, unique_key) -> None:
    key = unique_key()
    finish(procs.start(create_persistent_and_exit, key, 64, 1))
    native = SharedMemory(key).native_key
    (entry,) = [e for e in list_segments() if e.native_key == native]
    assert entry.persistent is True and entry.key == key and entry.size == 64
    assert entry.attachments == 0
    SharedMemory.remove(key)
    assert native not in [e.native_key for e in list_segments()]


@pytest.mark.parametrize(
    "label", ["ascii-" * 60, "é" * 200, "日本" * 60], ids=["ascii", "latin", "cjk"]
)
def test_list_segments_with_long_keys(unique_key, label: str) -> None:
    """A key too long for the header is shown cut short, never mangled."""
    key = unique_key(label)
    with SharedMemory(key) as shm:
        shm.create(64)
        (entry,) = [e for e in list_segments() if e.native_key == shm.native_key]
        assert entry.key and key.startswith(entry.key)
        assert "\ufffd" not in entry.key
