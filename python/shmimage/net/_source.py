"""Where the server's frames come from: one `FrameSource` per relay.

A source answers one question, without blocking: "the next frame after the
last one you gave me, and how many generations were skipped before it".
`FollowLatest` answers it over `SharedImage.wait(after=)` and `view()`: a
store that keeps only its latest frame cannot give back a frame the writer
overwrote before the server read it, so such frames are a gap (counted as
dropped on the relay), never faked. A source over a lossless subscription of
the store (every frame, with backpressure on the writer) is one more class
with the same two methods.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import NoFrameError, NotFoundError, SharedMemoryError
from ..image import SharedImage

_SANDWICH_TRIES = 8
_SPARE_COPIES = 4


class Pinned:
    """One frame held still while sends use it: its slot pinned by an open
    ``view()`` block or by the array itself (a subscription's frame), or a
    private copy. Shared by every relay that sends it; the pin goes when the
    last holder releases it (and ZeroMQ no longer references the array)."""

    __slots__ = ("_block", "_owner", "generation", "meta", "pixels", "refs", "timestamp_ns")

    def __init__(self, owner: LatestFrames | None, pixels: np.ndarray, block: Any,
                 generation: int, timestamp_ns: int, meta: dict[str, Any] | None) -> None:
        self._owner, self._block = owner, block
        self.pixels, self.generation = pixels, generation
        self.timestamp_ns, self.meta = timestamp_ns, meta
        self.refs = 0

    @property
    def pinned(self) -> bool:
        return self._block is not None

    def acquire(self) -> Pinned:
        self.refs += 1
        return self

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0 and self._owner is not None:
            self._owner._forget(self)
            block, self._block = self._block, None
            if block is not None:
                block.__exit__(None, None, None)
            else:
                self._owner._recycle(self.pixels)


class LatestFrames:
    """The key's newest frame, pinned once however many relays send it.

    At most ``max_pins`` slots stay pinned by sends at once (the store takes
    spare slots while readers pin, so a writer does not wait for them); a
    frame beyond that is sent from a private copy instead.
    """

    def __init__(self, key: str, max_pins: int = 2) -> None:
        self.image = SharedImage(key)
        self.max_pins = max_pins
        self.last_error: str | None = None
        self._live: dict[int, Pinned] = {}  # generation -> frame some send still holds
        self._spare: list[np.ndarray] = []  # copies no send uses any more, for reuse

    def newest(self) -> Pinned | None:
        """The newest frame (acquired: the caller releases it), or None before any."""
        try:
            generation = self.image.info().generation
        except (NotFoundError, NoFrameError):
            return None
        except SharedMemoryError as exc:  # e.g. a frame this version cannot read
            self.last_error = str(exc)
            return None
        live = self._live.get(generation)
        if live is not None:
            return live.acquire()
        for _ in range(_SANDWICH_TRIES):
            try:
                frame = self._pin_newest()
            except (TimeoutError, SharedMemoryError) as exc:  # a writer too fast to pin
                self.last_error = str(exc)                    # now: the next wake-up retries
                return None
            if frame is not None:
                self._live[frame.generation] = frame
                return frame.acquire()
        return None

    def _pin_newest(self) -> Pinned | None:
        """Pin the latest frame and learn its generation: the same before and
        after pinning means the pinned frame is that one (generations only grow)."""
        before = self.image.info()
        block: Any = self.image.view()
        pixels = block.__enter__()
        try:
            after = self.image.info()
        except BaseException:
            block.__exit__(None, None, None)
            raise
        if after.generation != before.generation:
            block.__exit__(None, None, None)
            return None
        meta = getattr(after, "meta", None)
        if self.pins() >= self.max_pins:
            pixels = self._copy(pixels)
            block.__exit__(None, None, None)
            block = None
        return Pinned(self, pixels, block, after.generation, after.timestamp_ns, meta)

    def _copy(self, pixels: np.ndarray) -> np.ndarray:
        """A private copy, into a buffer an earlier copy left (fresh pages cost more
        than the copy itself)."""
        for index, spare in enumerate(self._spare):
            if spare.shape == pixels.shape and spare.dtype == pixels.dtype:
                del self._spare[index]
                np.copyto(spare, pixels)
                return spare
        return np.array(pixels)

    def _recycle(self, pixels: np.ndarray) -> None:
        self._spare = [pixels, *self._spare[:_SPARE_COPIES - 1]]

    def pins(self) -> int:
        return sum(1 for frame in self._live.values() if frame.pinned)

    def _forget(self, frame: Pinned) -> None:
        if self._live.get(frame.generation) is frame:
            del self._live[frame.generation]

    def close(self) -> None:
        """Drop every pin (only after the sends that use them are over) and detach."""
        for frame in list(self._live.values()):
            frame.refs = 1
            frame.release()
        self._spare = []
        self.image.detach()


class FrameSource(Protocol):
    def take(self) -> tuple[int, Pinned] | None:
        """(gap, frame): the next frame to send (acquired) and the generations
        skipped since the last one; None when there is nothing newer."""

    def close(self) -> None: ...


class FollowLatest:
    """Frames after generation ``after`` (None: from the newest on), read from
    the latest-frame store: whatever the writer overwrote in between is a gap."""

    def __init__(self, frames: LatestFrames, after: int | None) -> None:
        self._frames = frames
        self.after = after

    def take(self) -> tuple[int, Pinned] | None:
        try:
            frame = self._frames.newest()
        except SharedMemoryError:
            return None
        if frame is None:
            return None
        if frame.generation == self.after:
            frame.release()
            return None
        # Generations only grow within a store: a smaller one is a new store's stream.
        gap = 0
        if self.after is not None and frame.generation > self.after:
            gap = frame.generation - self.after - 1
        self.after = frame.generation
        return gap, frame

    def close(self) -> None:
        pass
