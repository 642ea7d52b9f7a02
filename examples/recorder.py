"""A lossless recorder: every frame of a key, in order, to a numbered file series.

It rides a lossless subscription (``subscribe(lossless=True)``): the writer
never overwrites a frame the recorder has not taken yet, so a slow disk slows
the writer down instead of losing frames. uint8 frames with 1, 3 or 4
channels go to PNG (lossless: each file holds exactly the pixels published),
anything else to ``.npy``. Files are numbered by the frame's meta index (or
its generation). It stops after ``--frames`` frames, or when the writer ends
the stream (`SharedImage.end_stream`).

    python examples/recorder.py --key camera --out frames/
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from PIL import Image
from shmimage import Frame, SharedImage


def save(frame: Frame, out: str) -> str:
    """Write one frame to `out`, as PNG when PNG holds it exactly, else as .npy."""
    pixels, info = frame
    number = info.meta.get("index", info.generation)
    png = pixels.dtype == np.uint8 and (pixels.ndim == 2 or pixels.shape[-1] in (1, 3, 4))
    path = os.path.join(out, f"frame_{number:06d}.{'png' if png else 'npy'}")
    if png:
        Image.fromarray(pixels.squeeze(-1) if pixels.ndim == 3 and pixels.shape[-1] == 1
                        else pixels).save(path)
    else:
        np.save(path, pixels)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--out", default="frames")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds to sleep after each frame, as a slow disk would")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    # "oldest": start with the oldest frame the store still keeps (its
    # history); before the key exists, with its first frame.
    with SharedImage(args.key) as img, img.subscribe(lossless=True, start="oldest") as sub:
        print(f"recording {args.key!r}", flush=True)
        count = 0
        for frame in sub:  # blocks between frames; ends with the stream
            print(save(frame, args.out), flush=True)
            del frame      # unpin: the writer may reuse the slot
            time.sleep(args.delay)
            count += 1
            if count == args.frames:
                break
        print(f"recorded {count} frames, dropped {sub.dropped}", flush=True)


if __name__ == "__main__":
    main()
