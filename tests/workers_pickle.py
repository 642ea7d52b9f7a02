"""Pool workers for the pickling tests: each gets a pickled SharedImage or SharedMemory."""
from __future__ import annotations

import os
from typing import Any

import numpy as np


def read_and_sum(image: Any) -> tuple[int, str, bool, int]:
    """(pid, key, attached before use, sum of the frame) as the receiving process sees it."""
    attached_before = image.is_attached
    with image:
        frame = image.read()
        via_asarray = np.asarray(image)
    assert np.array_equal(frame, via_asarray)
    return os.getpid(), image.key, attached_before, int(frame.astype(np.int64).sum())


def publish_row(image: Any, row: int) -> int:
    """Publish a frame whose every pixel is `row`; the generation it got."""
    with image:
        return int(image.publish(np.full((4, 6), row, np.int16)))


def memory_key(memory: Any) -> tuple[str | None, str | None, bool]:
    return memory.key, memory.native_key, memory.is_attached
