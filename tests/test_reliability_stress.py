"""Lifecycle stress: processes create, attach, publish, read, detach and are
SIGKILLed at random for a bounded time, under a watchdog."""
from __future__ import annotations

import multiprocessing
import os
import sys

import pytest
from shmimage import NotFoundError, SharedImage
from workers_reliability import SCALE, WAIT, report, stress_supervisor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
spawn = multiprocessing.get_context("spawn")


def test_lifecycle_stress(procs, unique_key) -> None:
    keys = [unique_key("stress"), unique_key("stress")]
    temps_before = [n for n in os.listdir("/dev/shm") if n.startswith(".shmimage-")]
    seconds = max(3.0, 6.0 * SCALE)
    parent, child = spawn.Pipe(duplex=False)
    proc = procs.start(stress_supervisor, keys, 4, seconds, 4321, child)
    child.close()
    assert parent.poll(seconds + 3 * WAIT), "the stress supervisor hung (watchdog)"
    stats = parent.recv()
    proc.join(WAIT)
    report("lifecycle stress", {**stats, "seconds": seconds})
    assert proc.exitcode == 0
    assert stats["errors"] == []
    assert stats["kills"] >= 10
    assert stats["steps"] >= 100, "the workers hardly did anything"
    for key in keys:  # every holder is gone: the next touch reclaims what is left
        image = SharedImage(key)
        with pytest.raises(NotFoundError):
            image.read()
        assert not os.path.exists("/dev/shm" + image.native_key)
    assert [n for n in os.listdir("/dev/shm") if n.startswith(".shmimage-")] == temps_before
