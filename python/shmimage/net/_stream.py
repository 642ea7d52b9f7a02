"""A lossless relay's frames: one lossless subscription of the served store.

The subscription is registered in the segment, so the local writer never
overwrites a frame this relay has not been sent: when the relay stops
granting credits, the server stops taking frames and the writer's
`publish`/`loan` waits (its `TimeoutError` names the server's pid). Closing
the source (the relay said bye, or was silent too long) unregisters it and
frees the writer.
"""
from __future__ import annotations

from ..errors import EndOfStream, NotAttachedError, SharedMemoryError
from ..image import SharedImage
from ..subscription import Subscription
from ._source import Pinned


class EveryFrame:
    """Every frame after generation ``after`` (None: from the current frame on),
    each once, in order.

    A relay that comes back after generation ``after`` resumes right after it
    when the store still keeps the next frame; otherwise the frames it can no
    longer have are reported as the gap before the first one it gets.

    Raises
    ------
    OutOfResourcesError
        The store has its 64 lossless subscribers already.
    """

    def __init__(self, image: SharedImage, after: int | None) -> None:
        self.after = after
        if after is not None and after > _newest(image):
            self.after = None  # generations this store never had: a new store's stream
        start = "latest" if self.after is None else "oldest"
        self._sub: Subscription = image.subscribe(lossless=True, start=start, copy=False)
        self._dropped = 0

    def take(self) -> tuple[int, Pinned] | None:
        """(gap, frame) of the next frame, or None when it is not published yet."""
        while True:
            try:
                frame = self._sub.next(timeout=0)
            except (TimeoutError, EndOfStream, NotAttachedError):
                return None  # nothing yet; a later publish starts a new stream
            except SharedMemoryError:
                return None  # e.g. a store being replaced: the next wake-up retries
            info = frame.info
            skipped, self._dropped = self._sub.dropped - self._dropped, self._sub.dropped
            if self.after is not None and info.generation <= self.after:
                continue  # the relay has it already (kept frames before its resume point)
            gap = skipped
            if self.after is not None:
                gap = max(gap, info.generation - self.after - 1)
            self.after = info.generation
            pinned = Pinned(None, frame.pixels, None, info.generation, info.timestamp_ns,
                            info.meta or None)
            return gap, pinned.acquire()

    def close(self) -> None:
        """Unregister: a writer waiting for this relay goes on at once."""
        self._sub.close()


def _newest(image: SharedImage) -> int:
    try:
        return image.info().generation
    except SharedMemoryError:  # no store or no frame yet
        return 0
