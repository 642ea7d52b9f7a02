"""shmimage's own side of the round trips, and its single-process figures."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import SharedImage, SharedMemory
from .frames import rss_anon_bytes, unique_name
from .roundtrip import Writer

#: Round-trip modes: the reader's step, and whether the writer loans.
MODES = ("read", "view", "loan")


class ImageWriter(Writer):
    """Publishes the frame (``read``/``view``) or loans a slot and touches one pixel."""

    reader_role = f"{__name__}:ImageReader"

    def __init__(self, frame: np.ndarray, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.frame, self.mode, self.count = frame, mode, 0
        self.key = unique_name("i")
        self.image = SharedImage(self.key, capacity=frame.nbytes)
        self.image.publish(frame)

    def reader_args(self) -> dict[str, Any]:
        return {"key": self.key, "mode": self.mode}

    def publish(self) -> None:
        if self.mode != "loan":
            self.image.publish(self.frame)
            return
        self.count += 1
        with self.image.loan(self.frame.shape, self.frame.dtype) as pixels:
            pixels[0, 0, 0] = self.count & 0xFF

    def close(self) -> None:
        self.image.detach()


class ImageReader:
    def __init__(self, key: str, mode: str) -> None:
        self.image = SharedImage(key)
        self.copy = mode == "read"

    def step(self, message: bytes) -> None:
        if self.copy:
            int(self.image.read().flat[0])
            return
        with self.image.view() as pixels:
            int(pixels.flat[0])

    def close(self) -> None:
        self.image.detach()


class SteadyPublisher:
    """``publish`` into a segment that already holds a frame of this size."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.image = SharedImage(unique_name("s"), capacity=frame.nbytes)
        self.image.publish(frame)

    def publish(self) -> None:
        self.image.publish(self.frame)

    def close(self) -> None:
        self.image.detach()


class FirstPublisher:
    """Create a new segment and publish into it; ``teardown`` (untimed) removes it."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.image: Any = None

    def publish(self) -> None:
        self.image = SharedImage(unique_name("f"))
        self.image.publish(self.frame)

    def teardown(self) -> None:
        if self.image is not None:
            self.image.detach()
            self.image = None


class LockPair:
    """An uncontended ``SharedMemory.lock()`` + ``unlock()``."""

    def __init__(self) -> None:
        self.memory = SharedMemory(unique_name("l"))
        self.memory.create(4096)
        self.lock, self.unlock = self.memory.lock, self.memory.unlock

    def once(self) -> None:
        self.lock()
        self.unlock()

    def close(self) -> None:
        self.memory.detach()


class RssProbe:
    """Reader-side: ``RssAnon`` before, while holding a ``view()``, and with a ``read()`` copy."""

    def __init__(self, key: str) -> None:
        self.key = key

    def probe(self, conn: Any) -> dict[str, int]:
        self._hold_view_once()  # warm code paths and caches first
        before = rss_anon_bytes()
        image = SharedImage(self.key)
        try:
            with image.view() as pixels:
                _touch_every_page(pixels)
                in_view = rss_anon_bytes()
            copy = image.read()
            with_copy = rss_anon_bytes()
            del copy
        finally:
            image.detach()
        return {"before": before, "in_view": in_view, "with_copy": with_copy}

    def _hold_view_once(self) -> None:
        image = SharedImage(self.key)
        try:
            with image.view() as pixels:
                _touch_every_page(pixels)
        finally:
            image.detach()

    def close(self) -> None:
        pass


def _touch_every_page(pixels: np.ndarray) -> None:
    flat = pixels.reshape(-1)
    int(flat[::4096].max())
