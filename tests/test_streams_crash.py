"""A writer SIGKILLed mid-publish (between claim and commit: inside a loan
block, or in the copy of a large publish): subscriptions go on with what is
complete, never see a torn frame, and take a new writer's frames, whose
generations continue."""
from __future__ import annotations

import multiprocessing
import os
import signal

import pytest
from shmimage import SharedImage, SharedMemory
from test_image_crash import kill_while_writing
from workers_image import WAIT
from workers_streams import BIG, continue_indexed, index_frame, record, write_then_die

ctx = multiprocessing.get_context("spawn")


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    msg = conn.recv()
    assert not (isinstance(msg, tuple) and msg[0] == "error"), msg
    return msg


def check_frames(got: list) -> list:
    """Each frame whole (uniform pixels, meta and pixels of the same
    index, the index its generation), in strictly increasing order."""
    gens = [g for g, *_ in got]
    assert gens == sorted(set(gens)), "out of order or repeated"
    for gen, meta_i, pixel_i, uniform in got:
        assert uniform and meta_i == pixel_i == gen, (gen, meta_i, pixel_i, uniform)
    return gens


@pytest.mark.parametrize("how", ["loan", "publish"])
def test_writer_killed_mid_publish(procs, unique_key, how):
    key = unique_key("streams")
    with SharedImage(key, history=8, capacity=4 * BIG[0] * BIG[1]) as image, \
            SharedMemory(key) as raw:
        assert image.publish(index_frame(1), meta={"i": 1}) == 1
        raw.attach()
        recorders = []
        for lossless in (True, False):
            ready, ready_child = ctx.Pipe()
            parent, child = ctx.Pipe()
            procs.start(record, key, "next", 0.0, False, ready_child, child, lossless)
            assert receive(ready, "ready") == "ready"
            recorders.append(parent)
        if how == "loan":
            conn, child = ctx.Pipe()
            writer = procs.start(write_then_die, key, 100, how, child)
            assert receive(conn, "loan state") == "inside"
            os.kill(writer.pid, signal.SIGKILL)
            writer.join(WAIT)
        else:  # writers until one is killed in the middle of a copy
            for _ in range(20):
                conn, child = ctx.Pipe()
                writer = procs.start(write_then_die, key, 100, how, child)
                assert receive(conn, "state") == "publishing"
                if kill_while_writing(writer, raw):
                    break
            else:
                pytest.fail("no writer was killed in the middle of a copy")
        assert writer.exitcode == -signal.SIGKILL
        killed_at = image.info().generation
        assert killed_at >= 101
        w_parent, w_child = ctx.Pipe()
        procs.start(continue_indexed, key, 50, w_child)
        _, first, last = receive(w_parent, "new writer's result")
        assert first == killed_at + 1
        lossless_rec, lossy_rec = (receive(p, "recording") for p in recorders)
        _, got, dropped = lossless_rec
        assert check_frames(got) == list(range(2, last + 1)) and dropped == 0
        _, got, dropped = lossy_rec
        gens = check_frames(got)
        assert gens[-1] == last and dropped == (last - 1) - len(gens)
