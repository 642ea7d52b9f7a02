"""One method's round trips by its own wake-ups, many of them, for a profiler to look at.

    python benchmarks/profile_roundtrip.py "shmimage read()" --size 640x480 --trips 5000
    strace -f -c -o calls.txt python benchmarks/profile_roundtrip.py ... --trips 0
    perf record -e cpu-clock -F 20000 -g -o perf.data -- python benchmarks/profile_roundtrip.py ...

Runs the writer here and the reader in one spawned process, as ``shmimage
bench`` does, and prints the wall and CPU time per trip. Subtract a run with
``--trips 0`` from a long run to count what one round trip costs (syscalls,
samples) without the set-up. ``--list`` names the methods.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shmimage.bench import sandbox
from shmimage.bench.frames import make_frame, parse_size
from shmimage.bench.measure import WAKE_TRIPS
from shmimage.bench.pool import ReaderPool
from shmimage.bench.roundtrip_wake import interleaved


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/profile_roundtrip.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("method", nargs="?", default="shmimage read()")
    p.add_argument("--size", default="640x480")
    p.add_argument("--trips", type=int, default=5000)
    p.add_argument("--list", action="store_true", help="the methods, and exit")
    args = p.parse_args(argv)
    if args.list or args.method not in WAKE_TRIPS:
        print("\n".join(WAKE_TRIPS))
        return 0 if args.list else 2
    frame = make_frame(*parse_size(args.size))
    with sandbox.isolated(), ReaderPool(1) as pool, WAKE_TRIPS[args.method][0](frame) as writer:
        got = interleaved(pool.readers[0], {args.method: writer}, warmup=0,
                          runs=1 if args.trips else 0, exchanges=max(args.trips, 1))
    if got.failed:
        print(f"failed: {got.failed}", file=sys.stderr)
        return 1
    for wall, cpu in zip(got.wall[args.method], got.cpu[args.method]):
        print(f"{args.method} {args.size}: {args.trips} trips, {wall * 1e6:.2f} us wall "
              f"and {cpu * 1e6:.2f} us CPU (both processes) per trip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
