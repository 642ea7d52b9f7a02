"""Lossless subscriptions across a store that is replaced under its name
(frames grow or shrink, an option changes): every registered subscriber
keeps holding the writer back in the new store, whether or not it has
called next() since."""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time

import numpy as np
import pytest
from shmimage import SharedImage
from workers_image import WAIT
from workers_streams import (
    follow_lossless,
    index_frame,
    publish_growing,
    publish_resizing,
    receive,
    record,
    start_holder,
)

ctx = multiprocessing.get_context("spawn")


def test_frames_growing_mid_stream(procs, unique_key):
    key = unique_key("streams")
    count = 600
    with SharedImage(key, history=4) as first:
        first.publish(index_frame(0), meta={"i": 0})
        recorders = []
        for slow in (0.0, 0.003):
            ready, ready_child = ctx.Pipe()
            parent, child = ctx.Pipe()
            procs.start(record, key, "next", slow, False, ready_child, child, True)
            assert receive(ready, "ready") == "ready"
            recorders.append(parent)
        w_parent, w_child = ctx.Pipe()
        procs.start(publish_growing, key, 2, count, 4, w_child)
        _, last, moved = receive(w_parent, "writer result")
        assert last == count + 1
        assert moved >= 6  # it really grew and shrank, several times
        for parent in recorders:
            _, got, dropped = receive(parent, "recording")
            assert dropped == 0
            assert [g for g, *_ in got] == list(range(2, count + 2))
            for gen, meta_i, pixel_i, uniform in got:
                assert uniform and meta_i == pixel_i == gen


@pytest.mark.parametrize("how", ["grow", "rebuild"])
def test_an_idle_subscriber_holds_the_writer_back_in_the_new_store(procs, unique_key, how):
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(0))
        proc, conn, take = start_holder(procs, key)  # registered, never called next()
        old = writer._store
        if how == "grow":
            gens = [writer.publish(np.full((300, 300), 1, np.uint32))]
        else:
            writer = SharedImage(key, history=3)
            gens = [writer.publish(index_frame(1))]
        assert old.superseded  # the store was replaced
        subs = writer.status()["subscribers"]
        assert [(s["pid"], s["mode"]) for s in subs] == [(proc.pid, "lossless")]
        gens += [writer.publish(index_frame(i)) for i in range(2, 2 + (how == "rebuild") + 1)]
        with pytest.raises(TimeoutError, match=f"pid {proc.pid}"):
            writer.publish(index_frame(9), timeout=0.2)
        for gen in gens:
            take.send(1)
            assert receive(conn, "generation") == gen
        writer.publish(index_frame(9), timeout=WAIT)
        take.send(None)
        proc.join(WAIT)
        assert proc.exitcode == 0
        writer.detach()


def test_a_smaller_history_waits_for_lossless_subscribers(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=6) as writer:
        writer.publish(index_frame(1))
        proc, conn, take = start_holder(procs, key)  # at generation 2
        for i in range(2, 7):
            writer.publish(index_frame(i))
        got: list[int] = []

        def taker() -> None:
            for _ in range(6):
                time.sleep(0.05)
                take.send(1)
                got.append(receive(conn, "generation"))

        thread = threading.Thread(target=taker)
        thread.start()
        try:
            # Keeping 2 of 6 frames, the rebuild waits until 2, 3 and 4 are taken.
            with SharedImage(key, history=2) as smaller:
                assert smaller.publish(index_frame(7), timeout=WAIT) == 7
                assert smaller.status()["options"]["history"] == 2
        finally:
            thread.join(WAIT)
        assert got == [2, 3, 4, 5, 6, 7]
        take.send(None)
        proc.join(WAIT)
        assert proc.exitcode == 0


@pytest.mark.parametrize("call", ["publish", "loan"])
def test_a_smaller_history_rebuild_keeps_the_calls_timeout(procs, unique_key, call):
    key = unique_key("streams")
    with SharedImage(key, history=6) as writer:
        writer.publish(index_frame(1))
        proc, _, take = start_holder(procs, key)  # at generation 2, then stopped
        for i in range(2, 7):
            writer.publish(index_frame(i))
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with SharedImage(key, history=2) as smaller, \
                    pytest.raises(TimeoutError, match=str(proc.pid)):
                if call == "publish":
                    smaller.publish(index_frame(7), timeout=0.3)
                else:
                    with smaller.loan((4, 4), timeout=0.3):
                        pass
            assert writer.status()["options"]["history"] == 6  # nothing was rebuilt
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        take.send(None)
        proc.join(WAIT)
        assert proc.exitcode == 0


@pytest.mark.parametrize("how", ["killed", "closed"])
def test_a_carried_entry_is_let_go_by_death_or_close(procs, unique_key, how):
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(1))
        if how == "killed":
            proc, _, _ = start_holder(procs, key)
            pid = proc.pid
        else:
            reader = SharedImage(key)
            sub = reader.subscribe(lossless=True)
            pid = os.getpid()
        writer.publish(np.full((300, 300), 2, np.uint32))  # grows: the entry is carried
        writer.publish(index_frame(3))
        with pytest.raises(TimeoutError, match=f"pid {pid}"):
            writer.publish(index_frame(4), timeout=0.1)
        if how == "killed":
            os.kill(pid, signal.SIGKILL)  # not joined yet: a zombie is dead too
        else:
            sub.close()  # never called next(): its entry in the new store is given up
        for i in range(4, 10):
            writer.publish(index_frame(i), timeout=WAIT)
        assert writer.status()["subscribers"] == []
        if how == "closed":
            reader.detach()
        else:
            # Before the last detach: a process still exiting counts as attached,
            # and the segment would then wait for the next call to reclaim it.
            proc.join(WAIT)


def test_a_move_that_crosses_another_growth_keeps_the_carried_entry(unique_key, monkeypatch):
    """A subscription adopts its entry in the grown store, the store grows
    again before the subscription leaves its first one: leaving that old
    store must not give up the entry carried into the newest."""
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(1))
        reader = SharedImage(key)
        sub = reader.subscribe(lossless=True)  # at generation 2
        writer.publish(np.full((300, 300), 2, np.uint32))  # grows: the entry is carried
        assert sub.next(timeout=WAIT).info.generation == 2  # read through the new store
        register = sub._register

        def register_then_grow(store):
            store = register(store)  # adopted in the grown store
            writer.publish(np.full((600, 600), 3, np.uint32))  # grows again
            return store

        monkeypatch.setattr(sub, "_register", register_then_grow)
        assert sub.next(timeout=WAIT).info.generation == 3  # moves: adopts, leaves the first
        monkeypatch.undo()
        writer.publish(index_frame(4))
        with pytest.raises(TimeoutError, match=f"pid {os.getpid()}"):
            writer.publish(index_frame(5), timeout=0.2)  # would drop 4, not taken yet
        got = []
        for i in range(4, 8):
            got.append(sub.next(timeout=WAIT).info.generation)
            writer.publish(index_frame(i + 1), timeout=WAIT)
        assert got == [4, 5, 6, 7] and sub.dropped == 0
        sub.close()
        reader.detach()


def test_lossless_subscribers_miss_nothing_while_writers_resize_and_die(procs, unique_key):
    """Two writers publish frames of changing sizes (the store grows and
    shrinks all the time) and are SIGKILLed and restarted; two lossless
    subscribers, SIGSTOPped now and then, see every generation."""
    key = unique_key("streams")
    rng = random.Random(7)
    with SharedImage(key, history=4) as first:
        first.publish(index_frame(0))
        followers = []
        for _ in range(2):
            ready, ready_child = ctx.Pipe()
            stop, stop_child = ctx.Pipe()
            result, result_child = ctx.Pipe()
            proc = procs.start(follow_lossless, key, ready_child, stop_child, result_child)
            assert receive(ready, "ready") == "ready"
            followers.append((proc, stop, result))
        writers = [procs.start(publish_resizing, key, rng.random()) for _ in range(2)]
        end = time.monotonic() + 12.0
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.05, 0.3))
            if rng.random() < 0.5:
                j = rng.randrange(2)
                os.kill(writers[j].pid, signal.SIGKILL)
                writers[j].join(WAIT)
                writers[j] = procs.start(publish_resizing, key, rng.random())
            else:
                pid = rng.choice(followers)[0].pid
                os.kill(pid, signal.SIGSTOP)
                time.sleep(rng.uniform(0.001, 0.05))
                os.kill(pid, signal.SIGCONT)
        for proc in writers:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(WAIT)
        moved = first._store is not first._store.live or first._store.superseded
        for proc, stop, result in followers:
            stop.send(None)
            _, taken, gaps, dropped = receive(result, "result")
            proc.join(WAIT)
            assert (gaps, dropped) == ([], 0)
            assert taken > 100  # frames really flowed
        assert moved  # the store really was replaced
