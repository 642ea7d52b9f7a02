"""Lossy subscriptions across real processes: order, each frame once, exact
`dropped`, end of stream, zero-copy frames that stay true."""
from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
from shmimage import EndOfStream, NotAttachedError, SharedImage, SharedMemoryError
from workers_image import WAIT
from workers_streams import index_frame, publish_indexed, record, take_after

ctx = multiprocessing.get_context("spawn")


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    msg = conn.recv()
    assert msg[0] == "ok", msg
    return msg


def check_stream(got: list, dropped: int, first_gen: int, last_gen: int) -> None:
    """Strictly increasing, pixels and meta of the same frame, and the
    generations missed are exactly `dropped`."""
    gens = [g for g, *_ in got]
    assert gens == sorted(set(gens)), "out of order or repeated"
    for gen, meta_i, pixel_i, uniform in got:
        assert uniform and meta_i == pixel_i == gen, (gen, meta_i, pixel_i)
    assert gens[-1] == last_gen
    assert dropped == (last_gen - first_gen + 1) - len(gens)


@pytest.mark.parametrize("slow", [0.0, 0.002])
def test_lossy_order_and_exact_dropped(procs, unique_key, slow):
    key = unique_key("streams")
    count = 2000
    with SharedImage(key, history=8) as writer:
        writer.publish(index_frame(1), meta={"i": 1})  # the segment exists from here on
        subs = []
        for copy in (False, True):
            ready, ready_child = ctx.Pipe()
            parent, child = ctx.Pipe()
            procs.start(record, key, "next", slow, copy, ready_child, child)
            assert ready.poll(WAIT) and ready.recv() == "ready"
            subs.append(parent)
        # Generation g carries index g.
        w_parent, w_child = ctx.Pipe()
        procs.start(publish_indexed, key, 2, count, 8, True, w_child)
        assert receive(w_parent, "writer result")[1] == count + 1
        for parent in subs:
            _, got, dropped = receive(parent, "recording")
            check_stream(got, dropped, 2, count + 1)
            if slow:
                assert dropped > 0  # 2000 frames in far less than 2000 naps


def test_dropped_counts_exactly_what_was_overwritten(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=4) as writer:
        writer.publish(index_frame(0), meta={"i": 0})
        go, go_child = ctx.Pipe()
        parent, child = ctx.Pipe()
        procs.start(take_after, key, go_child, 4, child)
        assert go.poll(WAIT) and go.recv() == "ready"
        for i in range(1, 21):
            writer.publish(index_frame(i), meta={"i": i})
        go.send("go")
        _, got, dropped = receive(parent, "frames")
        assert got == [17, 18, 19, 20]  # the 4 kept
        assert dropped == 16


def test_starts(unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=4) as writer:
        for i in range(1, 7):
            writer.publish(index_frame(i), meta={"i": i})
        reader = SharedImage(key)
        with reader.subscribe(start="oldest") as sub:
            assert [sub.next(1).info.meta["i"] for _ in range(4)] == [3, 4, 5, 6]
            assert sub.dropped == 0
        with reader.subscribe(start="latest") as sub:
            assert sub.next(1).info.meta["i"] == 6
        with reader.subscribe(start="next") as sub:
            with pytest.raises(TimeoutError, match="within the timeout"):
                sub.next(0.05)
            writer.publish(index_frame(7), meta={"i": 7})
            assert sub.next(1).info.meta["i"] == 7
        with pytest.raises(ValueError, match="start"):
            reader.subscribe(start="first")
        reader.detach()


def test_frames_stay_true_while_referenced(unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=2, slots=2, max_slots=8) as writer:
        reader = SharedImage(key)
        with reader.subscribe() as sub:
            writer.publish(index_frame(1), meta={"i": 1})
            frame = sub.next(1)
            assert not frame.pixels.flags.writeable
            for i in range(2, 12):
                writer.publish(index_frame(i), meta={"i": i})
            assert (frame.pixels == 1).all() and frame.info.meta["i"] == 1
            assert sub.next(1).info.meta["i"] == 10 and sub.dropped == 8
            del frame
        reader.detach()


def test_end_stream_drains_then_stops_and_a_new_stream_follows(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=8) as writer:
        writer.publish(index_frame(0))
        ready, ready_child = ctx.Pipe()
        parent, child = ctx.Pipe()
        procs.start(record, key, "next", 0.0, False, ready_child, child)
        assert ready.poll(WAIT) and ready.recv() == "ready"
        for i in range(2, 7):
            writer.publish(index_frame(i), meta={"i": i})
        writer.end_stream()
        _, got, dropped = receive(parent, "recording")
        assert [g for g, *_ in got] == [2, 3, 4, 5, 6] and dropped == 0
        with SharedImage(key).subscribe(start="oldest") as sub:
            assert [sub.next(1).info.generation for _ in range(6)] == [1, 2, 3, 4, 5, 6]
            with pytest.raises(EndOfStream, match=key) as err:
                sub.next(1)
            assert isinstance(err.value, SharedMemoryError)
            assert list(sub) == []
            writer.publish(index_frame(7), meta={"i": 7})
            assert sub.next(1).info.meta["i"] == 7


def test_close_wakes_a_blocked_next_and_stops_iteration(unique_key):
    key = unique_key("streams")
    with SharedImage(key) as writer:
        writer.publish(index_frame(0))
        sub = SharedImage(key).subscribe()
        errors: list[BaseException] = []

        def take() -> None:
            try:
                sub.next(WAIT)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        t = threading.Thread(target=take)
        t.start()
        time.sleep(0.05)
        sub.close()
        t.join(WAIT)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], NotAttachedError)
        assert list(sub) == []
        with pytest.raises(NotAttachedError, match=key):
            sub.next(0)


def test_subscribe_before_the_writer_exists(procs, unique_key):
    key = unique_key("streams")
    sub = SharedImage(key).subscribe()
    parent, child = ctx.Pipe()
    procs.start(publish_indexed, key, 1, 3, 8, False, child, WAIT, True)
    frame = sub.next(WAIT)
    assert frame.info.generation == 1 and (frame.pixels == 1).all()
    receive(parent, "writer result")
    del frame
    sub.close()
    parent.send("done")


def test_copy_frames_are_private(unique_key):
    key = unique_key("streams")
    with SharedImage(key) as writer, SharedImage(key).subscribe(start="latest", copy=True) as sub:
        writer.publish(index_frame(5))
        frame = sub.next(1)
        assert frame.pixels.flags.writeable
        frame.pixels[...] = 0
        assert writer.status()["pins"] == []
        assert np.array_equal(writer.read(), index_frame(5))


def test_subscription_does_not_pickle(unique_key):
    import pickle

    key = unique_key("streams")
    with SharedImage(key) as writer:
        writer.publish(index_frame(1))
        with writer.subscribe() as sub, pytest.raises(TypeError, match="pickle"):
            pickle.dumps(sub)
