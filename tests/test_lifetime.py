"""Segment lifetime: what Qt's POSIX backend gets wrong."""
from __future__ import annotations

import multiprocessing
import os

import pytest
from shmimage import NotFoundError, SharedMemory
from shmimage.memory import collect_garbage
from workers_memory import (
    WAIT,
    attach_and_exit,
    attach_and_hold,
    create_and_hold,
    create_persistent_and_exit,
    finish,
    has_pattern,
    kill,
    killed_creator,
    shm_path,
    start_ready,
    write_pattern,
)

spawn = multiprocessing.get_context("spawn")


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
