"""A consumer: follows a key frame by frame, without copies or allocations.

`wait(after=)` returns the next generation (frames published in between are
skipped, never queued); `view_frame()` gives the pixels zero-copy with that
same frame's meta; `read(out=)` copies into one reused buffer instead.

    python examples/consumer.py --key camera --frames 50
"""
from __future__ import annotations

import argparse

import numpy as np
from shmimage import SharedImage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    buffer: np.ndarray | None = None
    with SharedImage(args.key) as img:
        seen = 0
        for _ in range(args.frames):
            seen = img.wait(timeout=args.timeout, after=seen)  # also waits for the key
            with img.view_frame() as (pixels, info):   # zero-copy, pinned, read-only
                index = info.meta.get("index")
                brightness = float(pixels.mean())
                if buffer is None or buffer.shape != pixels.shape:
                    buffer = np.empty_like(pixels)
            del pixels  # drop the pin before waiting: the writer may reuse the slot
            img.read(out=buffer)                        # a private copy, no allocation
            print(f"generation {info.generation} index {index} mean {brightness:.1f}", flush=True)


if __name__ == "__main__":
    main()
