"""Pins live as long as the arrays: views and published loans stay true
while referenced, in any process; spare slots instead of waiting; who pins."""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
from shmimage import SharedImage
from workers_frames import (
    exit_with_live_views,
    keep_views_out_of_phase,
    pin_and_wait,
    pin_both_spares,
    pin_every_slot_then_publish,
    publish_frames,
)
from workers_image import WAIT, frame_generation, gen_frame, shm_path

ctx = multiprocessing.get_context("spawn")
SHAPE = (48, 64)


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    return conn.recv()


def finish(proc) -> None:
    proc.join(WAIT)
    assert not proc.is_alive(), "child did not exit"
    assert proc.exitcode == 0, f"child failed with exit code {proc.exitcode}"


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        img.publish(gen_frame(SHAPE, 1))
        yield img


def test_a_kept_view_stays_unchanged_while_another_process_publishes(image, procs) -> None:
    with image.view() as kept:
        pass  # the block ends; the array is still referenced
    derived = kept[::2, ::2]
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(publish_frames, image.key, SHAPE, 50, child_end)
    assert receive(parent_end, "result")[0] == "ok"
    finish(proc)
    assert image.info().generation == 51
    assert frame_generation(kept) == 1 and frame_generation(derived) == 1
    del kept
    assert frame_generation(derived) == 1  # a derived array pins too


def test_the_loan_array_is_read_only_after_its_block_and_keeps_its_pixels(image, procs) -> None:
    with image.loan(SHAPE, np.float32) as mine:
        mine[...] = 2
    with pytest.raises(ValueError):
        mine[0, 0] = 3
    with pytest.raises(ValueError):
        mine.flags.writeable = True  # its buffer refuses writers now
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(publish_frames, image.key, SHAPE, 20, child_end)
    assert receive(parent_end, "result")[0] == "ok"
    finish(proc)
    assert frame_generation(mine) == 2  # published, pinned while referenced


def test_cancel_on_a_loan_block_publishes_nothing(image) -> None:
    block = image.loan(SHAPE, np.float32)
    with block as mine:
        mine[...] = 9
        block.cancel()
    assert image.info().generation == 1
    assert frame_generation(image.read()) == 1
    assert not mine.flags.writeable


def test_dropped_views_leave_no_pin_and_never_grow_the_store(image) -> None:
    before = image.status()
    size = os.stat(shm_path(image.native_key)).st_size
    with SharedImage(image.key) as writer:
        for i in range(10_000):
            with image.view() as pixels:
                pass
            if i % 100 == 0:
                writer.publish(gen_frame(SHAPE, i))
        del pixels
        gc.collect()
        after = image.status()
    assert after["pins"] == []
    assert after["slots_in_use"] == before["slots_in_use"]
    assert os.stat(shm_path(image.native_key)).st_size == size


def test_a_process_exiting_with_live_views_leaves_nothing(unique_key, procs) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        image.publish(gen_frame((8, 8), 1))
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(exit_with_live_views, key, child_end)
        assert receive(parent_end, "views") == (1, 5 * 64)
        finish(proc)
        assert image.status()["pins"] == []
        path = shm_path(image.native_key)
    assert not os.path.exists(path)


def test_three_readers_out_of_phase_never_make_the_writer_wait(image, procs) -> None:
    stop = ctx.Event()
    conns = []
    for phase in (0.0, 0.017, 0.033):
        parent_end, child_end = ctx.Pipe(duplex=False)
        procs.start(keep_views_out_of_phase, image.key, phase, stop, child_end)
        conns.append(parent_end)
    for conn in conns:  # each reader is pinning, however slowly it started
        assert receive(conn, "first view") == ("viewing",)
    try:
        for generation in range(2, 202):
            # timeout=0: a publish that had to wait for a slot would raise
            assert image.publish(gen_frame(SHAPE, generation), timeout=0) == generation
            time.sleep(0.005)
    finally:
        stop.set()
    results = [receive(conn, "views") for conn in conns]
    for result in results:
        assert result[0] == "ok", result
        assert result[1] > 0 and result[2] == 0, result  # no torn or changed frame
    assert image.status()["options"]["max_slots"] == 16


def test_all_pins_held_by_the_caller_raise_buffer_error_at_once(unique_key) -> None:
    with SharedImage(unique_key(), slots=2, max_slots=2) as image:
        first, second = pin_both_spares(image, SHAPE)  # the latest is kept: every spare is pinned
        started = time.monotonic()
        with pytest.raises(BufferError, match="pins every slot"):
            image.publish(gen_frame(SHAPE, 4), timeout=30)
        with pytest.raises(BufferError), image.loan(SHAPE, np.float32, timeout=30):
            pytest.fail("loaned a pinned slot")
        assert time.monotonic() - started < 10  # not the timeout
        assert (frame_generation(first), frame_generation(second)) == (1, 2)
        del first
        assert image.publish(gen_frame(SHAPE, 4), timeout=WAIT) == 4


def test_every_pin_held_by_the_calling_thread_raises_without_waiting(unique_key, procs) -> None:
    # No timeout: the child's publish could only end by raising at once. The
    # watchdog is the parent's bounded wait, not a measure of speed.
    parent_end, child_end = ctx.Pipe()
    child = procs.start(pin_every_slot_then_publish, unique_key(), child_end)
    status, outcome = receive(parent_end, "outcome (publish blocked: no BufferError)")
    finish(child)
    assert status == "ok", outcome
    assert outcome[0].startswith("BufferError:") and "pins every slot" in outcome[0], outcome
    assert outcome[1].startswith("BufferError:"), outcome
    assert outcome[2] == 12  # the pinned frames never changed


def test_a_deadline_already_past_says_buffer_error_not_timeout(unique_key) -> None:
    # One look is all a claim gets with timeout=0: the caller's own pins are
    # recognised at the first one, not after a grace period.
    with SharedImage(unique_key(), slots=2, max_slots=2) as image:
        first, second = pin_both_spares(image, SHAPE)
        with pytest.raises(BufferError, match="pins every slot"):
            image.publish(gen_frame(SHAPE, 4), timeout=0)
        del first, second


def test_another_threads_pin_is_waited_for_not_a_buffer_error(unique_key) -> None:
    with SharedImage(unique_key(), slots=2, max_slots=2) as image:
        image.publish(gen_frame(SHAPE, 1))
        with image.view() as mine:
            pass
        image.publish(gen_frame(SHAPE, 2))
        pinned, release = threading.Event(), threading.Event()
        events: list[str] = []

        def hold_a_view() -> None:
            with image.view() as theirs:
                pass
            pinned.set()
            release.wait(WAIT)
            events.append("released")
            del theirs

        holder = threading.Thread(target=hold_a_view)
        holder.start()
        try:
            assert pinned.wait(WAIT)
            image.publish(gen_frame(SHAPE, 3))  # the latest is kept: every spare pinned
            with pytest.raises(TimeoutError):  # another thread may let go: not BufferError
                image.publish(gen_frame(SHAPE, 4), timeout=0.2)
            threading.Timer(0.3, release.set).start()
            generation = image.publish(gen_frame(SHAPE, 4), timeout=WAIT)
            events.append("published")
        finally:
            release.set()
            holder.join(WAIT)
        assert generation == 4 and events == ["released", "published"]
        assert frame_generation(mine) == 1


def test_another_threads_pins_on_another_key_do_not_delay_buffer_error(unique_key) -> None:
    with SharedImage(unique_key()) as other, \
            SharedImage(unique_key(), slots=2, max_slots=2) as image:
        other.publish(gen_frame(SHAPE, 9))
        pinned, release = threading.Event(), threading.Event()

        def hold_a_view_of_the_other_key() -> None:
            with other.view() as theirs:
                pass
            pinned.set()
            release.wait(WAIT)
            del theirs

        holder = threading.Thread(target=hold_a_view_of_the_other_key)
        holder.start()
        try:
            assert pinned.wait(WAIT)
            first, second = pin_both_spares(image, SHAPE)
            with pytest.raises(BufferError, match="pins every slot"):
                image.publish(gen_frame(SHAPE, 4), timeout=0)
        finally:
            release.set()
            holder.join(WAIT)
        del first, second


def test_views_handed_over_by_an_ended_thread_count_as_the_callers(unique_key) -> None:
    with SharedImage(unique_key(), slots=2, max_slots=2) as image:
        image.publish(gen_frame(SHAPE, 1))
        handed: list = []

        def take_a_view() -> None:
            with image.view() as pixels:
                handed.append(pixels)

        worker = threading.Thread(target=take_a_view)
        worker.start()
        worker.join(WAIT)
        image.publish(gen_frame(SHAPE, 2))
        with image.view() as mine:
            pass
        image.publish(gen_frame(SHAPE, 3))
        # The ended thread frees nothing: waiting could not end. (Its OS
        # thread may end a moment after join() returns: a timeout, not 0.)
        with pytest.raises(BufferError, match="pins every slot"):
            image.publish(gen_frame(SHAPE, 4), timeout=WAIT)
        assert frame_generation(handed[0]) == 1 and frame_generation(mine) == 2
        handed.clear()
        assert image.publish(gen_frame(SHAPE, 4), timeout=WAIT) == 4
        del mine


def test_a_sigkilled_pinning_reader_frees_the_waiting_writer(unique_key, procs) -> None:
    with SharedImage(unique_key(), slots=2, max_slots=2) as image:
        image.publish(gen_frame(SHAPE, 1))
        parent_end, child_end = ctx.Pipe()
        child = procs.start(pin_and_wait, image.key, 2, child_end, 120.0)
        for generation in (1, 2):
            parent_end.send("pin")
            assert receive(parent_end, "pinned generation") == generation
            image.publish(gen_frame(SHAPE, generation + 1))
        with pytest.raises(TimeoutError) as caught:
            image.publish(gen_frame(SHAPE, 9), timeout=0.3)
        assert f"pid {child.pid} (2 pins)" in str(caught.value)
        assert str(caught.value).startswith(f"{image.key!r} ({image.native_key})")
        pins = image.status()["pins"]
        assert [(p["pid"], p["pins"]) for p in pins] == [(child.pid, 2)]
        done: list = []
        writer = threading.Thread(
            target=lambda: done.append(image.publish(gen_frame(SHAPE, 4), timeout=WAIT)))
        writer.start()
        time.sleep(0.2)
        assert writer.is_alive()  # waiting for a pinned slot
        os.kill(child.pid, signal.SIGKILL)
        writer.join(WAIT)
        assert done == [4]
        assert image.status()["pins"] == []


def test_arrays_inherited_through_fork_hold_no_pins_in_the_child(image, procs) -> None:
    with image.view() as kept:
        pass
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child drops what it inherited
        code = 1
        try:
            del kept  # must not unpin the parent's slot
            gc.collect()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    pins = image.status()["pins"]
    assert [(p["pid"], p["pins"]) for p in pins] == [(os.getpid(), 1)]
    with SharedImage(image.key) as writer:
        for generation in range(2, 12):
            writer.publish(gen_frame(SHAPE, generation))
    assert frame_generation(kept) == 1
