"""Counters of a server or relay, the one-line progress report, and a stop on signals."""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Callable

PROGRESS_SECONDS = 1.0


@dataclass
class Stats:
    """What a server sent or a relay received, since it started.

    Attributes
    ----------
    frames, bytes
        Frames sent (server, one per relay) or published (relay), and their
        payload bytes.
    dropped
        Generations a relay never received (skipped as lossy, overwritten
        before the server read them, or missed across a reconnect), as the
        relay counts them; on the server, the same gaps as relays reported them.
    rejected
        Malformed, hostile or oversized messages, dropped unused.
    relays
        Relays the server serves now.
    reconnects
        Times a relay connected again after losing its server.
    last_generation
        The generation of the last frame sent or published.

    Examples
    --------
    >>> from shmimage.net import Stats
    >>> stats = Stats(frames=3, bytes=12)
    >>> stats.snapshot()["frames"], stats.dropped
    (3, 0)
    """

    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    rejected: int = 0
    relays: int = 0
    reconnects: int = 0
    last_generation: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict, a copy taken now.

        Returns
        -------
        dict of str to int
            One entry per counter.

        Examples
        --------
        >>> from shmimage.net import Stats
        >>> Stats(relays=2).snapshot()["relays"]
        2
        """
        return asdict(self)


class Progress:
    """Calls ``report`` with a status line about once a second."""

    def __init__(self, stats: Stats, report: Callable[[str], None] | None,
                 server: bool = False) -> None:
        self._stats, self._report, self._server = stats, report, server
        self._since = time.monotonic()
        self._frames, self._bytes = stats.frames, stats.bytes

    def tick(self) -> None:
        now = time.monotonic()
        elapsed = now - self._since
        if self._report is None or elapsed < PROGRESS_SECONDS:
            return
        stats = self._stats
        fps = (stats.frames - self._frames) / elapsed
        mbps = (stats.bytes - self._bytes) / elapsed / 1e6
        self._since, self._frames, self._bytes = now, stats.frames, stats.bytes
        line = (f"{fps:.1f} fps  {mbps:.1f} MB/s  dropped {stats.dropped}  "
                f"rejected {stats.rejected}")
        self._report(f"{line}  relays {stats.relays}" if self._server else line)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Ctrl+C and SIGTERM call ``stop`` (in the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(*_: Any) -> None:
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
