"""A recorder: writes the frames of a key to a numbered PNG series.

PNG is lossless, so each file holds exactly the pixels published. It follows
the key with `wait(after=)`: a frame published while the previous one is
being written is skipped (the store keeps the latest frame), and the gap is
visible in the numbering, which is the frame's own meta index (or generation).

    python examples/recorder.py --key camera --out frames/ --frames 20
"""
from __future__ import annotations

import argparse
import os

from PIL import Image
from shmimage import SharedImage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--out", default="frames")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with SharedImage(args.key) as img:
        last = 0
        for _ in range(args.frames):
            img.wait(timeout=args.timeout, after=last)  # also waits for the key to appear
            pixels, info = img.read_frame()
            last = info.generation
            number = info.meta.get("index", info.generation)
            path = os.path.join(args.out, f"frame_{number:06d}.png")
            Image.fromarray(pixels).save(path)
            print(path, flush=True)


if __name__ == "__main__":
    main()
