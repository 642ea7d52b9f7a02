"""What a second buffer costs a copying round trip, with no shmimage code at all.

    python benchmarks/profile_buffers.py [--size 1920x1080] [--trips 150]

A latest-frame store keeps the newest frame readable while the next one is
written, so its writer alternates between two slots; a peer that overwrites
one buffer under a lock (``multiprocessing.shared_memory``, posix_ipc,
pyshmem), or iceoryx2, which loans the chunk its reader has just given back,
touches one. This times the bare pattern, numpy into shared memory and back
out, signalled over a Pipe, in the bench's placement: the writer copies the
frame into buffer ``i % n`` and the reader copies it into an array it keeps
(``copy``) or reads one byte (``view``). The ratio of two buffers to one is
the floor under shmimage's ratio to those peers where the frames, the
buffers and the reader's array outgrow the shared cache (1920x1080 here).
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Sequence
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from shmimage.bench import placement
from shmimage.bench.frames import make_frame, parse_size
from shmimage.bench.timing import timed_runs

STOP = b"s"


def reader(conn: Connection, name: str, nbytes: int, buffers: int, step: str,
           cpu: int | None) -> None:
    if cpu is not None:
        placement.pin({cpu})
    shm = shared_memory.SharedMemory(name=name)
    views: list[Any] = [np.ndarray(nbytes, np.uint8, buffer=shm.buf, offset=i * nbytes)
                        for i in range(buffers)]
    out = np.empty(nbytes, np.uint8)
    conn.send_bytes(b"r")
    while (message := conn.recv_bytes()) != STOP:
        if step == "copy":
            np.copyto(out, views[message[0]])
        else:
            int(views[message[0]][0])
        conn.send_bytes(b"a")
    views.clear()
    shm.close()


def trips(frame: np.ndarray, buffers: int, step: str, n: int,
          cpus: tuple[int, int] | None) -> float:
    """Median seconds of a round trip over ``n`` trips after a tenth of them as warm-up."""
    flat = frame.reshape(-1)
    shm = shared_memory.SharedMemory(create=True, size=flat.nbytes * buffers)
    views: list[Any] = [np.ndarray(flat.nbytes, np.uint8, buffer=shm.buf, offset=i * flat.nbytes)
                        for i in range(buffers)]
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=reader, args=(theirs, shm.name, flat.nbytes, buffers, step,
                                                cpus[1] if cpus else None))
    before = placement.pin({cpus[0]}) if cpus else None
    try:
        process.start()
        mine.recv_bytes()
        times = []
        for i in range(n + n // 10):
            start = time.perf_counter()
            np.copyto(views[i % buffers], flat)
            mine.send_bytes(bytes([i % buffers]))
            mine.recv_bytes()
            times.append(time.perf_counter() - start)
        mine.send_bytes(STOP)
        process.join(30)
    finally:
        if process.is_alive():
            process.kill()
        if before is not None:
            placement.pin(before)
        views.clear()
        shm.close()
        shm.unlink()
    return statistics.median(times[n // 10:])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/profile_buffers.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--size", action="append", dest="sizes", metavar="WxH")
    p.add_argument("--trips", type=int, default=150)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--placement", choices=placement.CHOICES, default=placement.CHOICES[0])
    args = p.parse_args(argv)
    cpus = placement.pair(args.placement)
    print(f"placement: {args.placement} {cpus or ''}")
    for size in args.sizes or ["640x480", "1920x1080", "3840x2160"]:
        frame = make_frame(*parse_size(size))
        memcpy = _memcpy(frame)
        for step in ("copy", "view"):
            got: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.rounds):  # interleaved: a slow spell hits both alike
                for buffers, runs in got.items():
                    runs.append(trips(frame, buffers, step, args.trips, cpus))
            one, two = (statistics.median(got[b]) for b in (1, 2))
            print(f"{size} {step}: one buffer {one * 1e6:.0f} us, two {two * 1e6:.0f} us, "
                  f"two/one {two / one:.2f}x; one memcpy {memcpy * 1e6:.0f} us")
    return 0


def _memcpy(frame: np.ndarray) -> float:
    """Median seconds of one copy of ``frame`` into an array kept for it."""
    copy = np.empty_like(frame)
    return statistics.median(timed_runs(lambda: np.copyto(copy, frame), warmup=3, runs=27))

if __name__ == "__main__":
    sys.exit(main())
