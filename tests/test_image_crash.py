"""Writers and readers SIGKILLed: never a torn frame, the lock and the slots come back."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
from shmimage import NoFrameError, SharedImage, SharedMemory, TornFrameError
from workers_image import (
    WAIT,
    create_without_frame,
    die_inside_loan,
    frame_generation,
    gen_frame,
    hold_view,
    publish_forever,
    publish_once,
    read_until_stopped,
    writing_slots,
)

ctx = multiprocessing.get_context("spawn")
LARGE = (2160, 3840)  # float32: 33 MB, so a kill very likely lands in the copy
CYCLES = 20


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    return conn.recv()


def kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(WAIT)
    assert proc.exitcode == -signal.SIGKILL


def kill_while_writing(proc, raw: SharedMemory) -> bool:
    """SIGKILL `proc` as soon as it writes a slot; True if the slot was still being written.

    Slots abandoned by earlier kills stay marked WRITING, so they do not count.
    """
    stale = set(writing_slots(raw))
    deadline = time.monotonic() + WAIT
    while not set(writing_slots(raw)) - stale and time.monotonic() < deadline:
        pass  # a tight loop: the copy of one large frame lasts only milliseconds
    kill(proc)
    return bool(set(writing_slots(raw)) - stale)


def assert_latest_is_complete(image: SharedImage, at_least: int) -> int:
    """The latest frame is uniform and carries the generation the store reports."""
    frame = image.read()
    generation = frame_generation(frame)
    assert generation >= at_least, f"frame {generation} is torn or older than {at_least}"
    assert generation == image.info().generation
    with image.view() as view:
        assert frame_generation(view) == generation
    return generation


def start_reader(procs, key: str) -> tuple:
    """A reader process that read()s and view()s until told to stop."""
    stop = ctx.Event()
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(read_until_stopped, key, stop, child_end)
    child_end.close()
    return proc, stop, parent_end


def stop_reader(proc, stop, conn) -> dict:
    stop.set()
    reply = receive(conn, "reader counts")
    proc.join(WAIT)
    assert reply[0] == "ok", reply
    return reply[1]


def test_writer_killed_mid_publish_repeatedly(procs, unique_key, record_property) -> None:
    key = unique_key()
    killed_mid_write = 0
    with SharedImage(key) as image, SharedMemory(key) as raw:
        image.publish(gen_frame(LARGE, 1))
        raw.attach()
        reader = start_reader(procs, key)
        for _ in range(CYCLES):
            before = image.info().generation
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = procs.start(publish_forever, key, LARGE, child_end)
            child_end.close()
            receive(parent_end, "writer pid")
            image.wait(timeout=WAIT, after=before)  # the child completed a frame
            killed_mid_write += kill_while_writing(proc, raw)
            generation = assert_latest_is_complete(image, before + 1)
            assert image.publish(gen_frame(LARGE, generation + 1), timeout=WAIT) == generation + 1
            assert_latest_is_complete(image, generation + 1)
        counts = stop_reader(*reader)
    report = f"killed mid-write in {killed_mid_write} of {CYCLES} cycles; reader saw {counts}"
    print(report)
    record_property("crash", report)
    assert killed_mid_write > 0, "no kill landed in the middle of a publish"
    assert counts["frames"] > 0 and counts["views"] > 0
    assert counts["torn"] == counts["backwards"] == counts["changed_in_view"] == 0, report
    assert counts["no_frame"] == 0, report


def kill_first_publish(procs, key: str) -> SharedImage | None:
    """A store with no frame whose first publish, in a child, is killed mid-copy.

    Returns the (attached) SharedImage when the kill landed in the publish,
    None when the publish finished first.
    """
    capacity = LARGE[0] * LARGE[1] * 4  # sized so the child need not grow the store
    image = SharedImage(key, capacity=capacity)
    create_without_frame(image)
    with SharedMemory(key) as raw:
        raw.attach()
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(publish_once, key, LARGE, child_end)
        child_end.close()
        receive(parent_end, "writer pid")
        landed = kill_while_writing(proc, raw)
    if landed:
        return image
    image.detach()
    return None


def test_first_publish_killed_mid_copy_is_torn_frame_error(procs, unique_key) -> None:
    for _ in range(5):  # on a loaded machine the publish may finish before the kill
        image = kill_first_publish(procs, unique_key())
        if image:
            break
    else:
        pytest.fail("no kill landed in the middle of the first publish")
    with image:
        for call in (image.read, image.info):
            with pytest.raises(TornFrameError):
                call()
        with pytest.raises(TornFrameError), image.view():
            pass
        assert image.publish(gen_frame(LARGE, 1), timeout=WAIT) == 1
        assert_latest_is_complete(image, 1)


@pytest.mark.parametrize("first", [False, True], ids=["after-a-frame", "first-frame"])
def test_writer_killed_inside_loan(procs, unique_key, first: bool) -> None:
    key = unique_key()
    shape = (480, 640)
    with SharedImage(key, capacity=shape[0] * shape[1] * 4) as image:
        if first:
            create_without_frame(image)
        else:
            image.publish(gen_frame(shape, 1))
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(die_inside_loan, key, shape, 7, child_end)
        child_end.close()
        assert receive(parent_end, "loan state") == "inside"
        if first:  # a frame being written by a live writer is not torn, just not there yet
            with pytest.raises(NoFrameError):
                image.read()
        else:  # readers do not wait for the writer
            assert assert_latest_is_complete(image, 1) == 1
        with pytest.raises(TimeoutError):  # the writer holds the segment's lock
            image.publish(gen_frame(shape, 99), timeout=0.3)
        kill(proc)
        if first:
            with pytest.raises(TornFrameError):
                image.read()
            with pytest.raises(TornFrameError):  # the example's second button, lock recovered
                SharedImage(key).load_from_memory()
        else:
            assert assert_latest_is_complete(image, 1) == 1
            assert frame_generation(SharedImage(key).load_from_memory()) == 1
        expected = 1 if first else 2
        assert image.publish(gen_frame(shape, expected), timeout=WAIT) == expected
        assert_latest_is_complete(image, expected)


def test_torn_frame_error_is_a_shared_memory_error() -> None:
    from shmimage import SharedMemoryError

    assert issubclass(TornFrameError, SharedMemoryError)
    assert not issubclass(TornFrameError, NoFrameError)


def test_killed_readers_release_their_pins(procs, unique_key) -> None:
    key = unique_key()
    shape = (120, 160)
    with SharedImage(key, slots=2, max_slots=2) as image:  # two readers pin every spare
        image.publish(gen_frame(shape, 1))
        never = ctx.Event()
        readers = []
        for generation in (1, 2):
            parent_end, child_end = ctx.Pipe(duplex=False)
            readers.append(procs.start(hold_view, key, child_end, never))
            child_end.close()
            assert receive(parent_end, "pinned generation") == generation
            image.publish(gen_frame(shape, generation + 1))
        with pytest.raises(TimeoutError):
            image.publish(gen_frame(shape, 99), timeout=0.3)
        for proc in readers:
            kill(proc)
        for generation in range(4, 10):  # every slot is usable again
            assert image.publish(gen_frame(shape, generation), timeout=WAIT) == generation
        assert_latest_is_complete(image, 9)
