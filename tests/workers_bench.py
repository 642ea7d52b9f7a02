"""Roles for the bench tests' spawned processes (the pool loads them by name)."""
from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any


class StuckWriter:
    """A stream writer that never finishes a run, as a blocked publisher would not."""

    def __init__(self, **_: Any) -> None:
        pass

    def reader_args(self, conn: Connection) -> dict[str, Any]:
        return {}

    def send(self, conn: Connection, frames: int) -> tuple[int, int]:
        time.sleep(3600)
        return 0, 0

    def close(self) -> None:
        pass
