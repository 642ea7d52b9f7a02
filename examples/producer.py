"""A camera-style producer: frames drawn straight into the shared slot.

Each frame is rendered in place into `SharedImage.loan()` (no copy), with its
index in the frame's meta. The "camera" is synthetic numpy frames (a moving
bar over a gradient), with no dependency beyond numpy; ``camera.py`` does the
same with OpenCV decoding a video file into the loaned array.

    python examples/producer.py --key camera --frames 100 --fps 30
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from shmimage import SharedImage


def draw(frame: np.ndarray, index: int) -> None:
    """Render frame `index` into `frame` (H, W, 3) uint8, in place."""
    width = frame.shape[1]
    frame[:] = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    x = (index * 8) % width
    frame[:, x:x + 8] = (255, 64, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    parser.add_argument("--linger", type=float, default=1.0,
                        help="seconds to stay attached after the last frame")
    args = parser.parse_args()
    height, width = (int(n) for n in args.size.split("x"))
    with SharedImage(args.key) as img:
        for index in range(args.frames):
            with img.loan((height, width, 3), np.uint8, meta={"index": index}) as frame:
                draw(frame, index)
            time.sleep(1.0 / args.fps)
        print(f"published {args.frames} frames to {args.key!r}", flush=True)
        time.sleep(args.linger)  # the segment lives while someone is attached


if __name__ == "__main__":
    main()
