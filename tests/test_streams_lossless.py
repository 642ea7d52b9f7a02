"""Lossless subscriptions across real processes: every frame once, in order,
the writer waits for the slowest live subscriber and never for a dead one."""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time

import pytest
from shmimage import OutOfResourcesError, SharedImage
from workers_image import WAIT
from workers_streams import (
    index_frame,
    publish_indexed,
    receive,
    record,
    start_holder,
)

ctx = multiprocessing.get_context("spawn")


def test_every_frame_once_in_order_with_slow_subscribers(procs, unique_key):
    key = unique_key("streams")
    count = 3000
    with SharedImage(key, history=8) as writer:
        writer.publish(index_frame(0), meta={"i": 0})
        recorders = []
        for slow in (0.0, 0.0, 0.001, 0.002):
            ready, ready_child = ctx.Pipe()
            parent, child = ctx.Pipe()
            procs.start(record, key, "next", slow, False, ready_child, child, True)
            assert ready.poll(WAIT) and ready.recv() == "ready"
            recorders.append(parent)
        assert len(writer.status()["subscribers"]) == 4
        w_parent, w_child = ctx.Pipe()
        procs.start(publish_indexed, key, 2, count, 8, True, w_child)
        assert receive(w_parent, "writer result") == ("ok", count + 1)
        for parent in recorders:
            _, got, dropped = receive(parent, "recording")
            assert dropped == 0
            assert [g for g, *_ in got] == list(range(2, count + 2))
            for gen, meta_i, pixel_i, uniform in got:
                assert uniform and meta_i == pixel_i == gen


def test_writer_times_out_naming_a_stopped_subscriber_then_resumes(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(0))
        proc, conn, take = start_holder(procs, key)
        writer.publish(index_frame(1))
        writer.publish(index_frame(2))
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(TimeoutError, match=f"pid {proc.pid}"):
                writer.publish(index_frame(3), timeout=0.3)
            lag = [s["lag"] for s in writer.status()["subscribers"] if s["pid"] == proc.pid]
            assert lag == [2]
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        take.send(1)
        assert receive(conn, "generation") == 2
        writer.publish(index_frame(3), timeout=WAIT)
        take.send(None)
        proc.join(WAIT)


def test_killed_subscriber_releases_a_waiting_writer(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(0))
        proc, _, _ = start_holder(procs, key)
        writer.publish(index_frame(1))
        writer.publish(index_frame(2))
        with pytest.raises(TimeoutError, match=f"pid {proc.pid}"):
            writer.publish(index_frame(3), timeout=0.1)

        def kill_soon() -> None:
            time.sleep(0.2)
            os.kill(proc.pid, signal.SIGKILL)

        import threading

        killer = threading.Thread(target=kill_soon)
        killer.start()
        writer.publish(index_frame(3), timeout=WAIT)  # resumes once it is dead
        killer.join()
        proc.join(WAIT)
        assert writer.status()["subscribers"] == []
        for i in range(4, 20):
            writer.publish(index_frame(i), timeout=1.0)


def test_closed_or_collected_subscriber_is_unregistered(unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=1) as writer:
        writer.publish(index_frame(0))
        reader = SharedImage(key)
        sub = reader.subscribe(lossless=True)
        writer.publish(index_frame(1))
        with pytest.raises(TimeoutError, match=f"pid {os.getpid()}"):
            writer.publish(index_frame(2), timeout=0.05)
        sub.close()
        writer.publish(index_frame(2), timeout=1.0)
        sub = reader.subscribe(lossless=True)
        writer.publish(index_frame(3))
        del sub
        gc.collect()
        writer.publish(index_frame(4), timeout=1.0)
        assert writer.status()["subscribers"] == []
        reader.detach()


def test_65th_lossless_subscriber_is_refused(unique_key):
    key = unique_key("streams")
    with SharedImage(key) as writer:
        writer.publish(index_frame(0))
        subs = [SharedImage(key).subscribe(lossless=True) for _ in range(64)]
        with pytest.raises(OutOfResourcesError, match=key):
            SharedImage(key).subscribe(lossless=True)
        subs.pop().close()
        subs.append(SharedImage(key).subscribe(lossless=True))
        assert len(writer.status()["subscribers"]) == 64
        for sub in subs:
            sub.close()
        assert writer.status()["subscribers"] == []


def test_a_lossless_subscription_refused_at_first_use_registers_on_the_next(unique_key):
    """Made before its key existed, it registers on first use; refused then
    (a full registry), it must not go on unregistered: the next call tries
    again."""
    key = unique_key("streams")
    reader = SharedImage(key)
    late = reader.subscribe(lossless=True)  # no store yet
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(1))
        subs = [SharedImage(key).subscribe(lossless=True) for _ in range(64)]
        with pytest.raises(OutOfResourcesError):
            late.next(timeout=0.1)
        subs.pop().close()
        assert late.next(timeout=WAIT).info.generation == 1
        assert len(writer.status()["subscribers"]) == 64  # late is registered
        for sub in subs + [late]:
            sub.close()
        assert writer.status()["subscribers"] == []
    reader.detach()
