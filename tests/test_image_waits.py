"""wait() before the key exists, and detach() waking a blocked wait()."""
from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
from shmimage import NotAttachedError, SharedImage
from workers_frames import create_later
from workers_image import WAIT

ctx = multiprocessing.get_context("spawn")


def test_wait_on_a_missing_key_is_woken_by_a_later_creator_using_no_cpu(unique_key, procs) -> None:
    key = unique_key()
    image = SharedImage(key)
    parent_end, child_end = ctx.Pipe()
    procs.start(create_later, key, 1.5, child_end)
    # The waiting thread's own CPU: other threads of the test process (left
    # by earlier tests) are not what is measured.
    wall, cpu = time.monotonic(), time.thread_time()
    generation = image.wait(timeout=WAIT)
    wall, cpu = time.monotonic() - wall, time.thread_time() - cpu
    assert generation == 1
    assert parent_end.poll(WAIT) and parent_end.recv() == ("ok", 1)
    assert wall >= 1.0, wall  # it really waited for the creator
    assert cpu / wall < 0.005, (cpu, wall)  # under 5 ms of CPU per second of waiting
    image.detach()
    parent_end.send("done")


def test_wait_on_a_missing_key_times_out(unique_key) -> None:
    image = SharedImage(unique_key())
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        image.wait(timeout=0.3)
    assert time.monotonic() - started >= 0.29
    assert not image.is_attached


def wait_in_thread(image: SharedImage) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["generation"] = image.wait(timeout=WAIT)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("exists", [False, True])
def test_detach_from_another_thread_wakes_wait(unique_key, exists) -> None:
    key = unique_key()
    writer = SharedImage(key)
    if exists:
        writer.publish(np.zeros((4, 4), np.uint8))
    image = SharedImage(key)
    thread, outcome = wait_in_thread(image)
    time.sleep(0.3)
    assert thread.is_alive()
    started = time.monotonic()
    image.detach()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(outcome.get("error"), NotAttachedError), outcome
    writer.detach()
