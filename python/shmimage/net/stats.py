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

    ``frames``/``bytes``: frames sent (server, one per relay) or published
    (relay) and their payload bytes. ``dropped``: generations a relay never
    received (skipped as lossy, overwritten before the server read them, or
    missed across a reconnect), as the relay counts them; on the server, the
    same gaps as it reported them. ``rejected``: malformed, hostile or
    oversized messages, dropped unused. ``relays``: relays the server serves.
    """

    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    rejected: int = 0
    relays: int = 0
    reconnects: int = 0
    last_generation: int = 0

    def snapshot(self) -> dict[str, int]:
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
