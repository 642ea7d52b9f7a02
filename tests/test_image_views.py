"""view(): zero-copy, pinned, never stalling the writer; slots running out; detach."""
from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
from shmimage import NotAttachedError, SharedImage
from workers_image import (
    WAIT,
    frame_generation,
    gen_frame,
    hold_view,
    lock_for,
    publish_while_viewed,
    shm_path,
    view_in_forked_child,
)

ctx = multiprocessing.get_context("spawn")
SHAPE = (120, 160, 3)


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    return conn.recv()


def finish(proc) -> None:
    proc.join(WAIT)
    assert not proc.is_alive(), "child did not exit"
    assert proc.exitcode == 0, f"child failed with exit code {proc.exitcode}"


@pytest.fixture
def image(unique_key):
    # Two spare slots, no more: the tests below pin them all.
    with SharedImage(unique_key(), slots=2, max_slots=2) as img:
        img.publish(gen_frame(SHAPE, 1))
        yield img


def publish_next(image: SharedImage, timeout: float | None = WAIT) -> int:
    generation = image.info().generation + 1
    assert image.publish(gen_frame(SHAPE, generation), timeout=timeout) == generation
    return generation


def test_view_pixels_do_not_change_while_the_writer_publishes(image: SharedImage) -> None:
    with SharedImage(image.key) as writer, image.view() as view:
        for _ in range(6):
            latest = publish_next(writer)
            assert frame_generation(view) == 1
        assert frame_generation(image.read()) == latest
    assert frame_generation(image.read()) == latest


def test_view_pins_against_a_writer_in_another_process(image: SharedImage, procs) -> None:
    parent_end, child_end = ctx.Pipe(duplex=False)
    with image.view() as view:
        proc = procs.start(publish_while_viewed, image.key, 8, child_end)
        child_end.close()
        result = receive(parent_end, "generations")
        assert result == ("ok", list(range(2, 10)))
        assert frame_generation(view) == 1
        assert image.info().generation == 9
    finish(proc)
    assert frame_generation(image.read()) == 9


def test_one_view_never_blocks_the_writer(image: SharedImage) -> None:
    with SharedImage(image.key) as writer, image.view() as view:
        for _ in range(30):
            publish_next(writer, timeout=5)
        assert frame_generation(view) == 1


def test_own_views_of_every_spare_slot_make_publish_raise_at_once(image: SharedImage) -> None:
    """This process pins them all: waiting could never end, BufferError at once."""
    with SharedImage(image.key) as a, SharedImage(image.key) as b, a.view() as first:
        publish_next(image)
        with b.view() as second:
            publish_next(image)  # the last free slot
            started = time.monotonic()
            with pytest.raises(BufferError, match="pins every slot"):
                image.publish(gen_frame(SHAPE, 99), timeout=30)
            with pytest.raises(BufferError), image.loan(SHAPE, np.float32, timeout=30):
                pytest.fail("a slot was loaned although every spare one is pinned")
            assert time.monotonic() - started < 10
            assert image.info().generation == 3
            assert frame_generation(image.read()) == 3
            assert (frame_generation(first), frame_generation(second)) == (1, 2)
        del second  # the pin goes with the last reference to the array
        assert publish_next(image, timeout=5) == 4


def test_views_from_one_object_pin_too(image: SharedImage) -> None:
    with image.view() as first:
        publish_next(image)
        with image.view() as second:
            publish_next(image)
            with pytest.raises(BufferError):
                image.publish(gen_frame(SHAPE, 99), timeout=0.3)
            assert (frame_generation(first), frame_generation(second)) == (1, 2)
        del second
        publish_next(image, timeout=5)


def test_nested_views_of_one_frame_keep_it_pinned(image: SharedImage) -> None:
    with SharedImage(image.key) as writer, image.view() as outer:
        with image.view() as inner:
            assert frame_generation(inner) == 1
        for _ in range(6):
            publish_next(writer, timeout=5)
        assert frame_generation(outer) == 1


def test_publish_times_out_when_reader_processes_pin_every_spare_slot(
    image: SharedImage, procs
) -> None:
    release = ctx.Event()
    conns, children = [], []
    try:
        for expected in (1, 2):
            parent_end, child_end = ctx.Pipe(duplex=False)
            children.append(procs.start(hold_view, image.key, child_end, release))
            child_end.close()
            conns.append(parent_end)
            assert receive(parent_end, "pinned generation") == expected
            publish_next(image)
        with pytest.raises(TimeoutError):
            image.publish(gen_frame(SHAPE, 99), timeout=0.3)
        assert image.info().generation == 3
        assert frame_generation(image.read()) == 3
    finally:
        release.set()
    assert [receive(conn, "generation at release") for conn in conns] == [1, 2]
    for child in children:
        finish(child)
    assert publish_next(image, timeout=5) == 4


def test_read_and_wait_work_inside_a_view(image: SharedImage) -> None:
    with SharedImage(image.key) as writer, image.view() as view:
        assert frame_generation(image.read()) == 1
        with pytest.raises(TimeoutError):
            image.wait(timeout=0.2)
        publish_next(writer)
        assert image.wait(timeout=WAIT, after=1) == 2
        assert frame_generation(image.read()) == 2
        with image.view() as newer:
            assert frame_generation(newer) == 2
        assert frame_generation(view) == 1


def test_view_survives_growth(image: SharedImage) -> None:
    with SharedImage(image.key) as writer, image.view() as view:
        big = (1080, 1920, 4)
        writer.publish(gen_frame(big, 2))
        assert frame_generation(view) == 1 and view.shape == SHAPE
        out = image.read()
        assert out.shape == big and frame_generation(out) == 2
        assert frame_generation(view) == 1


def test_detach_with_a_live_view_keeps_the_mapping(unique_key) -> None:
    image = SharedImage(unique_key())
    image.publish(gen_frame(SHAPE, 1))
    path = shm_path(image.native_key)
    with image.view() as view:
        assert image.detach() is True  # never BufferError
        assert not image.is_attached
        assert frame_generation(view) == 1
    assert frame_generation(view) == 1  # still mapped after the block
    assert image.detach() is False
    assert os.path.exists(path)
    del view
    gc.collect()
    assert not os.path.exists(path)


def test_context_exit_with_a_live_view(unique_key) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(gen_frame(SHAPE, 1))
        views = image.view()
        view = views.__enter__()
    assert frame_generation(view) == 1
    views.__exit__(None, None, None)
    del view, views
    gc.collect()
    assert not os.path.exists(shm_path(image.native_key))


def test_reattach_after_detach(image: SharedImage) -> None:
    with SharedImage(image.key) as other:
        assert frame_generation(other.read()) == 1
        assert other.detach() is True
        assert frame_generation(other.read()) == 1  # the next call attaches again


def test_a_waiting_publish_goes_ahead_when_a_view_closes(image: SharedImage, procs) -> None:
    results: list = []
    release = ctx.Event()
    with SharedImage(image.key) as a, a.view():
        publish_next(image)
        parent_end, child_end = ctx.Pipe(duplex=False)
        child = procs.start(hold_view, image.key, child_end, release)
        child_end.close()
        assert receive(parent_end, "pinned generation") == 2
        publish_next(image)
        thread = threading.Thread(
            target=lambda: results.append(image.publish(gen_frame(SHAPE, 4), timeout=WAIT))
        )
        thread.start()
        time.sleep(0.2)
        assert thread.is_alive()  # waits for the other process's pin
        release.set()  # its view closes: a slot is free again
        thread.join(WAIT)
        assert not thread.is_alive() and results == [4]
        finish(child)
    assert frame_generation(image.read()) == 4


def test_a_view_in_a_forked_child_stays_pinned(image: SharedImage, procs) -> None:
    fork = multiprocessing.get_context("fork")
    pinned, go = fork.Event(), fork.Event()
    parent_end, child_end = fork.Pipe(duplex=False)
    image.read()  # attached before the fork: the child inherits the store
    proc = procs.start(view_in_forked_child, image, pinned, go, child_end, method="fork")
    child_end.close()
    assert pinned.wait(WAIT), "the child did not open its view"
    image.read()  # pins and unpins the child's slot through the shared descriptor
    with SharedImage(image.key) as writer:
        for _ in range(6):
            publish_next(writer, timeout=5)
    go.set()
    seen = receive(parent_end, "generation in the child's view")
    finish(proc)
    assert seen == 1


def test_reader_processes_view_one_frame_together(image: SharedImage, procs) -> None:
    release = ctx.Event()
    conns, children = [], []
    try:
        for _ in range(2):
            parent_end, child_end = ctx.Pipe(duplex=False)
            children.append(procs.start(hold_view, image.key, child_end, release))
            child_end.close()
            conns.append(parent_end)
        assert [receive(conn, "pinned generation") for conn in conns] == [1, 1]
        with image.view() as view:  # a third reader of the same slot
            assert frame_generation(view) == 1
        for _ in range(5):
            publish_next(image, timeout=5)
    finally:
        release.set()
    assert [receive(conn, "generation at release") for conn in conns] == [1, 1]
    for child in children:
        finish(child)


def test_detach_while_another_thread_waits_never_crashes(unique_key) -> None:
    """detach() must not unmap under a thread blocked in wait(): it wakes
    that thread, which raises NotAttachedError."""
    key = unique_key()
    with SharedImage(key) as writer:
        writer.publish(np.zeros((4, 4), np.uint8))
        reader = SharedImage(key)
        reader.read()
        woke: dict = {}

        def wait() -> None:
            try:
                woke["generation"] = reader.wait(timeout=10)
            except NotAttachedError:
                woke["detached"] = True

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        while not reader._store.segment.waiting_count and waiter.is_alive():
            threading.Event().wait(0.01)
        assert reader.detach() is True
        waiter.join(10)
        assert not waiter.is_alive()
        assert woke == {"detached": True}
        writer.publish(np.ones((4, 4), np.uint8))


def test_each_view_is_an_array_of_its_own(image: SharedImage) -> None:
    """Views over one slot share pixels, never the array object (it may be reshaped)."""
    with image.view() as first:
        pass
    with image.view() as second:
        assert second is not first
        flat = second.reshape(-1)
        assert flat.shape == (int(np.prod(SHAPE)),)
    with image.view() as third:
        assert third.shape == SHAPE and not third.flags.writeable
        np.testing.assert_array_equal(third, first)


def test_views_follow_frames_that_change_shape_and_dtype(image: SharedImage) -> None:
    frames = [np.full((8, 8), 1, np.uint8), np.full((8, 8), 2, np.uint16),
              np.full((8, 8, 1), 3, np.uint8), np.full((4, 16, 4), 4, np.float32),
              np.full((8, 8), 5, np.uint8)] * 2
    for frame in frames:
        image.publish(frame)
        for _ in range(2):
            with image.view() as pixels:
                assert pixels.shape == frame.shape and pixels.dtype == frame.dtype
                np.testing.assert_array_equal(pixels, frame)


def test_a_view_block_cannot_be_entered_twice(image: SharedImage) -> None:
    block = image.view()
    with block, pytest.raises(RuntimeError, match="already open"):
        block.__enter__()
    assert image.publish(gen_frame(SHAPE, 2), timeout=WAIT) == 2
    with block as pixels:  # closed again: it may be used once more
        assert pixels[0, 0, 0] == gen_frame(SHAPE, 2)[0, 0, 0]


def test_timeout_bounds_the_lock_wait_and_the_slot_wait_together(image: SharedImage, procs) -> None:
    """One deadline for the whole publish: waiting for the lock uses up part
    of it, and what is left is all the wait for a free slot gets."""
    release = ctx.Event()
    with SharedImage(image.key) as a, a.view():
        publish_next(image)
        parent_end, child_end = ctx.Pipe(duplex=False)
        pinner = procs.start(hold_view, image.key, child_end, release)
        child_end.close()
        assert receive(parent_end, "pinned generation") == 2
        try:
            publish_next(image)  # every spare slot is now pinned
            ready = ctx.Event()
            holder = procs.start(lock_for, image.key, 0.6, ready)
            assert ready.wait(WAIT)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                image.publish(gen_frame(SHAPE, 99), timeout=1.0)
            elapsed = time.monotonic() - started
            finish(holder)
        finally:
            release.set()
        finish(pinner)
    # The lock for 0.6 s, then the slots: 1.0 s in all, not 0.6 + 1.0.
    assert 0.9 < elapsed < 1.4, elapsed
