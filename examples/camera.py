"""A camera-style producer: OpenCV decodes a video straight into the shared slot.

Each frame is decoded by `cv2.VideoCapture` into the array `SharedImage.loan()`
lends (``capture.read(image=frame)`` writes into the array it is given when
shape and dtype match), turned from OpenCV's BGR into RGB in place, and
published when the block ends, with its index in the frame's meta: no copy
and no allocation per frame. A real camera is ``cv2.VideoCapture(0)``.
``--make N`` first writes a generated N-frame video (FFV1, else MJPG) to
``--video``, so the example needs no file of its own. Headless.

    python examples/camera.py --key camera --video demo.avi --make 60
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from shmimage import SharedImage


def make_video(path: str, frames: int, width: int = 64, height: int = 48,
               fps: float = 25.0) -> None:
    """Write `frames` generated BGR frames (a bar moving over a gradient) to `path`."""
    for codec in ("FFV1", "MJPG"):  # lossless where OpenCV's build has it
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, (width, height))
        if writer.isOpened():
            break
    else:
        raise RuntimeError(f"OpenCV cannot write {path} with FFV1 or MJPG")
    frame = np.empty((height, width, 3), np.uint8)
    for index in range(frames):
        frame[:] = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
        frame[:, :, 0] = index * 5 % 256                    # blue: the frame's own level
        x = (index * 4) % width
        frame[:, x:x + 4] = (0, 64, 255)                    # an orange bar (BGR)
        writer.write(frame)
    writer.release()


def stream(capture: cv2.VideoCapture, img: SharedImage, fps: float) -> int:
    """Decode every frame of `capture` into a loan of `img`; returns how many."""
    shape = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
             int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), 3)
    index = 0
    while True:
        block = img.loan(shape, np.uint8, meta={"index": index})
        with block as frame:
            ok, decoded = capture.read(image=frame)       # decodes into the loan
            if not ok:
                block.cancel()                            # end of the video: publish nothing
                return index
            if decoded is not frame:                      # OpenCV had to reallocate
                raise RuntimeError(f"frame {index} is not {shape} uint8")
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)
        index += 1
        if fps > 0:
            time.sleep(1.0 / fps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--video", required=True, help="a video file OpenCV can decode")
    parser.add_argument("--make", type=int, default=0, metavar="N",
                        help="first write a generated N-frame video to --video")
    parser.add_argument("--fps", type=float, default=None,
                        help="pace (default: the video's own rate; 0: as fast as it decodes)")
    parser.add_argument("--history", type=int, default=None, help="frames the store keeps")
    parser.add_argument("--linger", type=float, default=1.0,
                        help="seconds to stay attached after the last frame")
    args = parser.parse_args()
    if args.make:
        make_video(args.video, args.make)
    capture = cv2.VideoCapture(args.video)
    if not capture.isOpened():
        parser.error(f"OpenCV cannot open {args.video}")
    fps = capture.get(cv2.CAP_PROP_FPS) if args.fps is None else args.fps
    try:
        with SharedImage(args.key, history=args.history) as img:
            count = stream(capture, img, fps)
            img.end_stream()                              # subscribers drain, then stop
            print(f"published {count} frames to {args.key!r}", flush=True)
            time.sleep(args.linger)                       # the segment lives while attached
    finally:
        capture.release()


if __name__ == "__main__":
    main()
