"""Permissions: segments are private to their user; nobody else gets in."""
from __future__ import annotations

import multiprocessing
import os
import stat
import sys

import numpy as np
import pytest
from shmimage import SharedImage, SharedMemory
from workers_reliability import WAIT, squat_as_user, try_as_user

NOBODY = 65534
spawn = multiprocessing.get_context("spawn")
needs_root = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="needs root to run a child as another user",
)


def mode_of(native_key: str) -> int:
    return stat.S_IMODE(os.stat("/dev/shm" + native_key).st_mode)


def test_segments_are_0600_whatever_the_umask(unique_key) -> None:
    old = os.umask(0)
    try:
        with SharedMemory(unique_key()) as shm:
            shm.create(64)
            assert mode_of(shm.native_key) == 0o600
        with SharedImage(unique_key(), capacity=4096) as image:
            image.publish(np.zeros((8, 8), np.uint8))
            assert mode_of(image.native_key) == 0o600
            image.publish(np.zeros((512, 512, 4), np.uint8))  # grows: a new segment
            assert mode_of(image.native_key) == 0o600
    finally:
        os.umask(old)


@needs_root
def test_another_user_cannot_get_in(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        image.publish(np.full((8, 8), 1, np.uint8))
        parent, child = spawn.Pipe(duplex=False)
        proc = procs.start(try_as_user, key, NOBODY, child)
        child.close()
        assert parent.poll(WAIT), "the child sent nothing"
        results = parent.recv()
        proc.join(WAIT)
        assert np.all(image.read() == 1)  # untouched
    denied = {name: "PermissionDeniedError" for name in results}
    denied["create"] = results["create"] if results["create"] in (
        "PermissionDeniedError", "AlreadyExistsError") else "PermissionDeniedError"
    assert results == denied


@needs_root
def test_another_user_cannot_reclaim_a_stale_segment(procs, unique_key) -> None:
    """Our process is gone: still, another user may not take or remove the segment."""
    key = unique_key()
    native = SharedMemory(key).native_key
    with SharedMemory(key) as shm:
        shm.create(64, persistent=True)
    try:
        parent, child = spawn.Pipe(duplex=False)
        proc = procs.start(try_as_user, key, NOBODY, child)
        child.close()
        assert parent.poll(WAIT), "the child sent nothing"
        results = parent.recv()
        proc.join(WAIT)
        assert results["attach"] == results["remove"] == "PermissionDeniedError"
        assert results["create"] in ("PermissionDeniedError", "AlreadyExistsError")
        assert os.path.exists("/dev/shm" + native)
    finally:
        SharedMemory.remove(key)


@needs_root
def test_a_segment_squatted_by_another_user_is_refused(procs, unique_key) -> None:
    key = unique_key()
    ready, stop = spawn.Event(), spawn.Event()
    squatter = procs.start(squat_as_user, key, NOBODY, ready, stop)
    try:
        assert ready.wait(WAIT), "the squatter never got ready"
        with pytest.raises(Exception) as info:
            SharedImage(key).read()
        assert type(info.value).__name__ in ("PermissionDeniedError", "IncompatibleSegmentError")
    finally:
        stop.set()
        squatter.join(WAIT)  # it removes its segment on the way out
