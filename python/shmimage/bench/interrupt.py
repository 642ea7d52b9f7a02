"""Ctrl+C and SIGTERM stop the suite between two runs, never inside one.

An exception raised at an arbitrary bytecode could land between creating a
segment and recording it for removal; so the first signal only asks to stop,
and the suite stops at its next safe point. A second signal stops at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_requested = False


def check() -> None:
    """A safe point: raise KeyboardInterrupt here if a stop was asked for."""
    if _requested:
        raise KeyboardInterrupt


def _ask(signum: int, frame: object) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM ask the block to stop at its next ``check()``."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = False
    previous = {sig: signal.signal(sig, _ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested = False
