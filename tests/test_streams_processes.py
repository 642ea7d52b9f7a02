"""A Subscription across processes (that it does not pickle is tested in
test_streams_lossy): a forked child's inherited subscription re-attaches
with its own position, leaving the parent's registration and position
alone."""
from __future__ import annotations

import multiprocessing
import os

import pytest
from shmimage import SharedImage
from workers_image import WAIT
from workers_streams import index_frame, take_inherited


def test_forked_child_reattaches_with_its_own_position(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=4) as writer, SharedImage(key) as reader:
        writer.publish(index_frame(1))
        sub = reader.subscribe(lossless=True, start="latest")
        assert sub.next(WAIT).info.generation == 1
        writer.publish(index_frame(2))
        writer.publish(index_frame(3))
        conn, child = multiprocessing.Pipe()
        proc = procs.start(take_inherited, sub, key, 2, child, method="fork")
        assert conn.poll(WAIT), "the child sent nothing"
        assert conn.recv() == ("ok", [2, 3], True)
        proc.join(WAIT)
        assert proc.exitcode == 0
        subs = writer.status()["subscribers"]
        assert [(s["pid"], s["next"]) for s in subs] == [(os.getpid(), 2)]
        assert sub.next(WAIT).info.generation == 2  # its own position
        for i in range(4, 7):
            writer.publish(index_frame(i), timeout=WAIT)  # kept: 3..6
        with pytest.raises(TimeoutError, match=f"pid {os.getpid()}"):
            writer.publish(index_frame(7), timeout=0.2)  # would drop 3, not taken here
        sub.close()
        writer.publish(index_frame(7), timeout=WAIT)
