"""One method's round trips by its own wake-ups, many of them, for a profiler to look at.

    python benchmarks/profile_roundtrip.py "shmimage read()" --size 640x480 --trips 5000
    strace -f -c -o calls.txt python benchmarks/profile_roundtrip.py ... --trips 0
    perf record -e cpu-clock -F 20000 -g -o perf.data -- python benchmarks/profile_roundtrip.py ...

Runs the writer here and the reader in one spawned process, as ``shmimage
bench`` does, and prints the wall and CPU time per trip. Subtract a run with
``--trips 0`` from a long run to count what one round trip costs (syscalls,
samples, instructions) without the set-up. ``--list`` names the methods: the
own-wake-up round trips and the 1x1 ping-pongs (``ping-pong: ...``).
``--placement`` pins the two processes as the bench does (default two-cpus).

    valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=cg.%p \
        python benchmarks/profile_roundtrip.py "ping-pong: posix_ipc" --trips 2000
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from shmimage.bench import methods_wakeup as wake
from shmimage.bench import placement, sandbox
from shmimage.bench.frames import make_frame, parse_size
from shmimage.bench.measure import WAKE_TRIPS
from shmimage.bench.pool import Reader, ReaderPool
from shmimage.bench.roundtrip_wake import interleaved

#: The ping-pong figures' two sides (the writer's class, the reader's role arguments).
PING_PONGS: dict[str, Any] = {
    "ping-pong: shmimage publish->wait": (wake.ImagePingPong, "keys"),
    "ping-pong: posix_ipc semaphores": (wake.SemaphorePingPong, "names"),
    "ping-pong: pyshmem": (wake.PyshmemPingPong, "names"),
}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/profile_roundtrip.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("method", nargs="?", default="shmimage read()")
    p.add_argument("--size", default="640x480")
    p.add_argument("--trips", type=int, default=5000)
    p.add_argument("--placement", choices=placement.CHOICES, default=placement.CHOICES[0])
    p.add_argument("--list", action="store_true", help="the methods, and exit")
    args = p.parse_args(argv)
    if args.list or args.method not in [*WAKE_TRIPS, *PING_PONGS]:
        print("\n".join([*WAKE_TRIPS, *PING_PONGS]))
        return 0 if args.list else 2
    with sandbox.isolated(), ReaderPool(1) as pool, \
            placement.pinned(placement.pair(args.placement), pool.readers[0]):
        if args.method in PING_PONGS:
            return ping_pong(pool.readers[0], args.method, args.trips)
        frame = make_frame(*parse_size(args.size))
        with WAKE_TRIPS[args.method][0](frame) as writer:
            got = interleaved(pool.readers[0], {args.method: writer}, warmup=0,
                              runs=1 if args.trips else 0, exchanges=max(args.trips, 1))
    if got.failed:
        print(f"failed: {got.failed}", file=sys.stderr)
        return 1
    for wall, cpu in zip(got.wall[args.method], got.cpu[args.method]):
        print(f"{args.method} {args.size}: {args.trips} trips, {wall * 1e6:.2f} us wall "
              f"and {cpu * 1e6:.2f} us CPU (both processes) per trip")
    return 0


def ping_pong(reader: Reader, name: str, trips: int) -> int:
    make, arg = PING_PONGS[name]
    pinger = make()
    try:
        cpu = time.process_time_ns()
        samples = wake.ping_pong(reader, pinger.role, {arg: getattr(pinger, arg)},
                                 pinger.exchange, warmup=0,
                                 runs=max(trips // wake.EXCHANGES_PER_RUN, 1))
        cpu = time.process_time_ns() - cpu
    finally:
        pinger.close()
    n = len(samples)
    print(f"{name}: {n} trips, {sum(samples) / n * 1e6:.2f} us wall and "
          f"{cpu / n / 1e3:.2f} us CPU (this process) per trip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
