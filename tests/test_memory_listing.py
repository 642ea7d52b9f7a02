"""`list_segments()` and `collect_garbage()`: what is on the machine, and what is stale."""
from __future__ import annotations

import os

import pytest
from shmimage import SharedMemory
from shmimage.memory import collect_garbage, list_segments
from workers_memory import (
    attach_and_hold,
    create_persistent_and_exit,
    finish,
    killed_creator,
    shared_machine,
    shm_path,
    start_ready,
)


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
