"""SharedImage across real (spawned) processes: the example's flow, wait(), growth."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image
from shmimage import NotFoundError, SharedImage, SharedMemory
from workers_image import (
    WAIT,
    block_until_interrupted,
    create_without_frame,
    hold_loaded_file,
    load_from_memory,
    loan_and_hold,
    publish_and_leave,
    publish_on_signal,
    read_on_request,
    shm_path,
    wait_for_first_frame,
    wait_for_frame,
    wait_with_timeout,
)

ctx = multiprocessing.get_context("spawn")


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    return conn.recv()


def finish(proc) -> None:
    proc.join(WAIT)
    assert not proc.is_alive(), "child did not exit"
    assert proc.exitcode == 0, f"child failed with exit code {proc.exitcode}"


def pattern(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)


@pytest.fixture
def picture(tmp_path) -> tuple:
    pixels = pattern(90, 120, seed=5)
    path = tmp_path / "example.png"
    Image.fromarray(pixels).save(path)
    return str(path), pixels


def start_first_dialog(procs, key: str, path: str) -> tuple:
    """The example's first dialog in a child: load the file, stay attached."""
    parent_end, child_end = ctx.Pipe(duplex=False)
    release = ctx.Event()
    proc = procs.start(hold_loaded_file, key, path, child_end, release)
    child_end.close()
    return proc, receive(parent_end, "loaded pixels"), release


def second_dialog(procs, key: str) -> tuple:
    """The example's second dialog in another child."""
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(load_from_memory, key, child_end)
    child_end.close()
    result = receive(parent_end, "load_from_memory result")
    finish(proc)
    return result


def test_the_examples_flow(procs, unique_key, picture) -> None:
    key = unique_key()
    path, pixels = picture
    first, loaded, release = start_first_dialog(procs, key, path)
    np.testing.assert_array_equal(loaded, pixels)
    status, shown = second_dialog(procs, key)
    assert status == "ok"
    np.testing.assert_array_equal(shown, pixels)
    np.testing.assert_array_equal(SharedImage(key).load_from_memory(), pixels)
    release.set()
    finish(first)
    assert second_dialog(procs, key)[:2] == ("error", "NotFoundError")
    with pytest.raises(NotFoundError):
        SharedImage(key).load_from_memory()
    assert not os.path.exists(shm_path(SharedImage(key).native_key))


def test_the_examples_flow_when_the_first_dialog_is_killed(procs, unique_key, picture) -> None:
    key = unique_key()
    first, _, _ = start_first_dialog(procs, key, picture[0])
    assert second_dialog(procs, key)[0] == "ok"
    os.kill(first.pid, signal.SIGKILL)
    first.join(WAIT)
    assert first.exitcode == -signal.SIGKILL
    assert second_dialog(procs, key)[:2] == ("error", "NotFoundError")
    assert not os.path.exists(shm_path(SharedImage(key).native_key))


def test_load_from_memory_leaves_nothing_attached(unique_key, picture) -> None:
    key = unique_key()
    with SharedImage(key) as first:
        first.load_from_file(picture[0])
        second = SharedImage(key)
        for _ in range(3):
            np.testing.assert_array_equal(second.load_from_memory(), picture[1])
        assert not second.is_attached
    with pytest.raises(NotFoundError):
        second.load_from_memory()


def test_wait_is_woken_by_another_processs_publish(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        image.publish(np.zeros((4, 4), np.uint8))
        go, release = ctx.Event(), ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        frame = np.full((4, 4), 7, np.uint8)
        proc = procs.start(publish_on_signal, key, go, [frame], child_end, release)
        child_end.close()
        # Tell the child to publish only once this thread is (most likely) asleep in wait().
        timer = threading.Timer(0.3, go.set)
        timer.start()
        try:
            assert image.wait(timeout=WAIT) == 2
        finally:
            timer.cancel()
            go.set()
            release.set()
        assert receive(parent_end, "generations") == [2]
        assert image.info().writer_pid == proc.pid
        np.testing.assert_array_equal(image.read(), frame)
        finish(proc)


def test_a_waiting_process_is_woken_by_publish(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        image.publish(np.zeros((4, 4), np.uint8))
        ready = ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(wait_for_frame, key, 1, ready, child_end)
        child_end.close()
        assert ready.wait(WAIT), "the waiter did not attach"
        frame = np.full((4, 4), 9, np.uint8)
        image.publish(frame)
        status, generation, seen, writer = receive(parent_end, "woken frame")
        assert (status, generation, writer) == ("ok", 2, os.getpid())
        np.testing.assert_array_equal(seen, frame)
        finish(proc)


def test_wait_times_out_in_another_process(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        image.publish(np.zeros((4, 4), np.uint8))
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(wait_with_timeout, key, 0.3, child_end)
        child_end.close()
        assert receive(parent_end, "wait result")[:2] == ("error", "TimeoutError")
        finish(proc)


def test_wait_timeout_and_after(unique_key) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(np.zeros((4, 4), np.uint8))
        image.publish(np.zeros((4, 4), np.uint8))
        with pytest.raises(TimeoutError):
            image.wait(timeout=0.2)
        with pytest.raises(TimeoutError):
            image.wait(timeout=0, after=2)
        assert image.wait(timeout=0.2, after=0) == 2  # already newer: no waiting
        assert image.wait(after=1) == 2


def ask(conn, what: str = "read"):
    conn.send(what)
    reply = receive(conn, "reader's reply")
    assert reply[0] == "ok", reply
    return reply[1], reply[2]


def test_growth_followed_by_an_attached_reader_process(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as writer:
        writer.publish(pattern(8, 8, seed=1))
        parent_end, child_end = ctx.Pipe()
        proc = procs.start(read_on_request, key, child_end)
        child_end.close()
        frame, info = ask(parent_end)
        assert frame.shape == (8, 8, 4) and info.generation == 1
        for generation, (height, width) in enumerate([(1080, 1920), (2160, 3840)], 2):
            big = pattern(height, width, seed=generation)
            writer.publish(big)
            frame, info = ask(parent_end)
            assert info.generation == generation and info.shape == big.shape
            np.testing.assert_array_equal(frame, big)
        parent_end.send("stop")
        finish(proc)


def test_a_reader_follows_growth_by_a_writer_process(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as reader:
        reader.publish(pattern(8, 8, seed=1))
        assert reader.read().shape == (8, 8, 4)
        big = pattern(720, 1280, seed=2)
        go, release = ctx.Event(), ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(publish_on_signal, key, go, [big], child_end, release)
        child_end.close()
        go.set()
        try:
            assert receive(parent_end, "generations") == [2]
            np.testing.assert_array_equal(reader.read(), big)
            assert reader.info().writer_pid == proc.pid
        finally:
            release.set()
        finish(proc)
        np.testing.assert_array_equal(reader.read(), big)


def test_a_reader_follows_growth_after_the_writer_left(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as reader:
        reader.publish(pattern(8, 8, seed=1))
        big = pattern(720, 1280, seed=2)
        go, release = ctx.Event(), ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(publish_on_signal, key, go, [big], child_end, release)
        child_end.close()
        go.set()
        release.set()
        assert receive(parent_end, "generations") == [2]
        finish(proc)
        np.testing.assert_array_equal(reader.read(), big)


def test_a_waiting_process_follows_growth(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as writer:
        writer.publish(np.zeros((4, 4), np.uint8))
        ready = ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(wait_for_frame, key, 1, ready, child_end)
        child_end.close()
        assert ready.wait(WAIT), "the waiter did not attach"
        big = pattern(1080, 1920, seed=3)
        writer.publish(big)
        status, generation, seen, _ = receive(parent_end, "woken frame")
        assert (status, generation) == ("ok", 2)
        np.testing.assert_array_equal(seen, big)
        finish(proc)


def test_a_persistent_image_outlives_its_writer(procs, unique_key) -> None:
    key = unique_key()
    frame = pattern(30, 40, seed=8)
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(publish_and_leave, key, frame, True, child_end)
    child_end.close()
    assert receive(parent_end, "generation") == 1
    finish(proc)
    np.testing.assert_array_equal(SharedImage(key).load_from_memory(), frame)
    SharedMemory.remove(key)
    with pytest.raises(NotFoundError):
        SharedImage(key).load_from_memory()


def test_an_image_that_is_not_persistent_leaves_with_its_writer(procs, unique_key) -> None:
    key = unique_key()
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(publish_and_leave, key, pattern(3, 4, seed=1), False, child_end)
    child_end.close()
    assert receive(parent_end, "generation") == 1
    finish(proc)
    with pytest.raises(NotFoundError):
        SharedImage(key).load_from_memory()


def test_wait_sleeps_instead_of_polling(unique_key) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(np.zeros((4, 4), np.uint8))
        cpu = time.process_time()
        with pytest.raises(TimeoutError):
            image.wait(timeout=1.0)
        # CPU time, not wall time: a futex sleeper uses next to none of it.
        assert time.process_time() - cpu < 0.25


def test_wait_releases_the_gil(unique_key) -> None:
    with SharedImage(unique_key()) as image, SharedImage(image.key) as waiter:
        image.publish(np.zeros((4, 4), np.uint8))
        assert waiter.info().generation == 1
        woken: list = []
        thread = threading.Thread(target=lambda: woken.append(waiter.wait(timeout=WAIT)))
        thread.start()
        try:
            image.publish(np.ones((4, 4), np.uint8))  # would hang if wait() held the GIL
        finally:
            thread.join(WAIT)
        assert not thread.is_alive() and woken == [2]


def test_a_small_publish_that_must_wait_releases_the_gil(unique_key) -> None:
    """A small frame goes in without releasing the GIL only when the
    store's lock is free at once; waiting for it, the GIL is released."""
    with SharedImage(unique_key()) as image:
        image.publish(np.zeros((2, 2), np.uint8))
        holder = SharedMemory(image.key)
        holder.attach()
        assert holder.lock(timeout=WAIT)  # the store's own mutex, held by this thread
        done: list = []

        def publish() -> None:
            try:
                done.append(image.publish(np.ones((2, 2), np.uint8), timeout=5.0))
            except TimeoutError as exc:
                done.append(exc)

        thread = threading.Thread(target=publish)
        thread.start()
        try:
            # Pure Python work runs here while the publish waits for the lock.
            spins, end = 0, time.monotonic() + 0.3
            while time.monotonic() < end:
                spins += 1
            waiting = thread.is_alive()
        finally:
            holder.unlock()
            thread.join(WAIT)
            holder.detach()
        assert waiting and spins > 1000
        assert done == [2]


def test_default_key_is_the_examples() -> None:
    image = SharedImage()
    assert image.key == "QSharedMemoryExample"
    assert image.native_key == SharedMemory("QSharedMemoryExample").native_key
    assert not image.is_attached


def test_waiting_for_the_very_first_frame(procs, unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        create_without_frame(image)
        ready = ctx.Event()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(wait_for_first_frame, key, ready, child_end)
        child_end.close()
        assert ready.wait(WAIT), "the waiter did not attach"
        frame = pattern(5, 6, seed=4)
        image.publish(frame)
        status, generation, seen = receive(parent_end, "first frame")
        assert (status, generation) == ("ok", 1)
        np.testing.assert_array_equal(seen, frame)
        finish(proc)


def test_a_4k_frame_from_loan_to_view_across_processes(procs, unique_key) -> None:
    key = unique_key()
    shape = (2160, 3840, 4)
    release = ctx.Event()
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(loan_and_hold, key, shape, child_end, release)
    child_end.close()
    try:
        assert receive(parent_end, "generation") == 1
        expected = np.arange(shape[1], dtype=np.uint8)[np.newaxis, :, np.newaxis]
        with SharedImage(key) as image, image.view() as view:
            assert view.shape == shape and not view.flags.owndata
            assert (view == expected).all()
            assert image.info().writer_pid == proc.pid
    finally:
        release.set()
    finish(proc)


@pytest.mark.parametrize("how", ["wait", "publish"])
def test_ctrl_c_interrupts_a_call_blocked_without_timeout(procs, unique_key, how) -> None:
    """The core blocks with the GIL released, yet SIGINT gets through at once."""
    key = unique_key()
    ready = ctx.Event()
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(block_until_interrupted, key, how, ready, child_end)
    child_end.close()
    assert ready.wait(WAIT)
    time.sleep(0.3)  # well inside the blocking call
    os.kill(proc.pid, signal.SIGINT)
    reply = receive(parent_end, "outcome")
    assert reply[0] == "interrupted", reply
    assert 0.2 < reply[1] < 5.0  # it did block, and it did not block on
    finish(proc)
