"""Spawned producers for the viewer tests: a camera-like writer in its own process."""
from __future__ import annotations

from typing import Any

import numpy as np
from shmimage import SharedImage

WAIT = 30.0


def colour_of(index: int) -> tuple[int, int, int]:
    """A distinct opaque colour per frame index (below 2**24)."""
    return (index & 0xFF, (index >> 8) & 0xFF, 100 + (index >> 16))


def produce(key: str, count: int, history: int, last: tuple[int, int, int], conn: Any) -> None:
    """Publish ``count`` frames as fast as it can, then one of colour ``last``;
    send ("ok", generation of that last frame), stay attached until told to go."""
    frame = np.empty((300, 400, 4), np.uint8)
    frame[..., 3] = 255
    with SharedImage(key, history=history) as image:
        try:
            for i in range(count):
                frame[..., :3] = colour_of(i)
                image.publish(frame, timeout=WAIT)  # lossy viewers never make it wait
            frame[..., :3] = last
            conn.send(("ok", image.publish(frame, timeout=WAIT)))
        except Exception as exc:  # noqa: BLE001 - reported to the test
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        conn.poll(WAIT)
