"""Timeouts turned into monotonic deadlines and back, one rule for every call."""
from __future__ import annotations

import math
import time


def seconds(timeout: float) -> float:
    """A timeout in seconds, checked as the core checks it."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError(f"timeout must be None or >= 0, not {timeout!r}")
    return t


def deadline_of(timeout: float | None) -> float | None:
    """The monotonic time a call with `timeout` ends by (None: never)."""
    return None if timeout is None else time.monotonic() + seconds(timeout)


def time_left(deadline: float | None) -> float | None:
    """Seconds until `deadline`, never negative (None: no deadline)."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
