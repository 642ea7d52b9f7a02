"""Torture: one writer process, two reader processes, a few seconds, zero torn frames."""
from __future__ import annotations

import multiprocessing
import threading

import pytest
from shmimage import SharedImage
from workers_image import (
    STEADY_CAPACITY,
    WAIT,
    TortureCounts,
    frame_generation,
    gen_frame,
    loan_writer,
    torture_reader,
    torture_round,
    torture_shape,
    torture_writer,
)

ctx = multiprocessing.get_context("spawn")
SECONDS = 3.0
READERS = 2


def collect(conn, who: str):
    assert conn.poll(WAIT + SECONDS), f"the {who} sent no result"
    reply = conn.recv()
    assert reply[0] == "ok", f"the {who} failed: {reply}"
    return reply[1]


def run_torture(procs, key: str, growing: bool) -> tuple:
    """Writer and readers for SECONDS; (frames published, summed reader counts)."""
    writer_end, child_end = ctx.Pipe(duplex=False)
    children = [procs.start(torture_writer, key, SECONDS, growing, child_end)]
    child_end.close()
    reader_ends = []
    for _ in range(READERS):
        parent_end, child_end = ctx.Pipe(duplex=False)
        children.append(procs.start(torture_reader, key, SECONDS, growing, child_end))
        child_end.close()
        reader_ends.append(parent_end)
    published = collect(writer_end, "writer")
    counts = [collect(end, "reader") for end in reader_ends]
    for proc in children:
        proc.join(WAIT)
        assert proc.exitcode == 0
    return published, {name: sum(c[name] for c in counts) for name in counts[0]}


@pytest.mark.parametrize("growing", [False, True], ids=["steady", "growing"])
def test_readers_never_see_a_torn_frame(procs, unique_key, record_property, growing) -> None:
    key = unique_key()
    with SharedImage(key, capacity=None if growing else STEADY_CAPACITY) as image:
        image.publish(gen_frame(torture_shape(1, growing), 1))
        published, total = run_torture(procs, key, growing)
    report = f"torture: published={published} " + " ".join(f"{k}={v}" for k, v in total.items())
    print(report)
    record_property("torture", report)
    assert published > 0 and total["frames"] > 0 and total["views"] > 0
    assert total["torn"] == 0, report
    assert total["backwards"] == 0, report
    assert total["changed_in_view"] == 0, report
    assert total["no_frame"] == 0, report


def test_two_writer_processes_take_turns(procs, unique_key) -> None:
    key = unique_key()
    shape, count = (240, 320), 300
    with SharedImage(key) as image:
        image.publish(gen_frame(shape, 1))
        ends, writers = [], []
        for _ in range(2):
            parent_end, child_end = ctx.Pipe(duplex=False)
            writers.append(procs.start(loan_writer, key, count, shape, child_end))
            child_end.close()
            ends.append(parent_end)
        last = reads = 0
        while any(w.is_alive() for w in writers) and reads < 100_000:
            generation = frame_generation(image.read())
            assert generation >= last, f"torn or older frame: {generation} after {last}"
            last, reads = generation, reads + 1
        assert [collect(end, "writer") for end in ends] == [count, count]
        for proc in writers:
            proc.join(WAIT)
            assert proc.exitcode == 0
        assert image.info().generation == 1 + 2 * count
        assert frame_generation(image.read()) == 1 + 2 * count


def test_threads_sharing_one_image(unique_key) -> None:
    """One SharedImage object used by a writer thread and reader threads at once."""
    image = SharedImage(unique_key(), capacity=STEADY_CAPACITY)
    image.publish(gen_frame(torture_shape(1, False), 1))
    stop = threading.Event()
    seen = [TortureCounts(False) for _ in range(READERS)]
    errors: list = []

    def read(counts: TortureCounts) -> None:
        try:
            while not stop.is_set():
                torture_round(image, counts)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(counts,)) for counts in seen]
    try:
        for thread in threads:
            thread.start()
        for generation in range(2, 400):
            image.publish(gen_frame(torture_shape(generation, False), generation), timeout=WAIT)
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
        image.detach()
    assert not errors, errors
    total = {name: sum(s.counts[name] for s in seen) for name in seen[0].counts}
    assert total["frames"] > 0
    assert total["torn"] == total["backwards"] == total["changed_in_view"] == 0, total
    assert total["no_frame"] == 0, total
