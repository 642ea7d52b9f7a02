"""shmimage's own side of the round trips, and its single-process figures."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from .. import SharedImage, SharedMemory
from .frames import rss_anon_bytes, unique_name
from .roundtrip import Writer

#: Round-trip modes: the reader's step (a copy out, into a kept array, a view, or
#: nothing at all: the 1x1 wake-up), and whether the writer loans.
MODES = ("read", "read-out", "view", "loan", "signal")
WAIT_SECONDS = 30.0
TINY = np.zeros((1, 1, 4), np.uint8)


class ImageWriter(Writer):
    """Publishes the frame or loans a slot and touches one pixel.

    Signalled over the Pipe, ``publish`` is the writer's part; with shmimage's
    own wake-ups, ``exchange`` publishes and waits for the reader's ack frame
    on a second key.
    """

    reader_role = f"{__name__}:ImageReader"

    def __init__(self, frame: np.ndarray, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.frame, self.mode, self.count = frame, mode, 0
        self.key, self.ack_key = unique_name("i"), unique_name("k")
        self.image = SharedImage(self.key, capacity=frame.nbytes)
        self.ack = SharedImage(self.ack_key)
        try:
            self.image.publish(frame)
            self.ack_seen = self.ack.publish(TINY)
        except BaseException:
            self.close()
            raise

    def reader_args(self) -> dict[str, Any]:
        return {"key": self.key, "mode": self.mode, "ack": self.ack_key}

    def publish(self) -> None:
        if self.mode != "loan":
            self.image.publish(self.frame)
            return
        self.count += 1
        with self.image.loan(self.frame.shape, self.frame.dtype) as pixels:
            pixels[0, 0, 0] = self.count & 0xFF

    def exchange(self) -> None:
        self.publish()
        self.ack_seen = self.ack.wait(timeout=WAIT_SECONDS, after=self.ack_seen)

    def close(self) -> None:
        self.image.detach()
        self.ack.detach()


def has_read_out() -> bool:
    """Whether this version's ``SharedImage.read`` takes ``out=`` (copy into a kept array)."""
    try:
        return "out" in inspect.signature(SharedImage.read).parameters
    except (TypeError, ValueError):
        return False


class ImageReader:
    def __init__(self, key: str, mode: str, ack: str) -> None:
        self.image, self.ack = SharedImage(key), SharedImage(ack)
        self.mode, self.seen = mode, 0
        self.out = np.empty(self.image.info().shape, np.uint8) if mode == "read-out" else None
        self.read_into: Any = self.image.read  # read(out=) where the version has it

    def step(self, message: bytes) -> None:
        if self.mode == "read":
            int(self.image.read().flat[0])
        elif self.mode == "read-out":
            self.read_into(out=self.out)
        elif self.mode != "signal":
            with self.image.view() as pixels:
                int(pixels.flat[0])

    def arm(self) -> None:
        self.seen = self.image.info().generation

    def pong(self) -> None:
        self.seen = self.image.wait(timeout=WAIT_SECONDS, after=self.seen)
        self.step(b"")
        self.ack.publish(TINY)

    def close(self) -> None:
        self.image.detach()
        self.ack.detach()


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
