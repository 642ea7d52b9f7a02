"""Ctrl+C and SIGTERM as one way out, for the commands that run until stopped."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def interrupted_by_signals() -> Iterator[None]:
    """SIGTERM and SIGINT both raise KeyboardInterrupt inside the block.

    SIGINT is set explicitly because a shell starts background jobs with it ignored.
    """
    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
