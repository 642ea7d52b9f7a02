"""What a participant samples of itself: descriptors, mappings, resident memory."""
from __future__ import annotations

import os
from typing import NamedTuple

PAGE = os.sysconf("SC_PAGE_SIZE")


class Sample(NamedTuple):
    fds: int
    maps: int
    rss: int  # bytes


def sample() -> Sample:
    fds = len(os.listdir("/proc/self/fd"))
    with open("/proc/self/maps", "rb") as f:
        maps = sum(1 for _ in f)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    return Sample(fds, maps, rss)


def growth(baseline: Sample, latest: Sample) -> Sample:
    return Sample(*(b - a for a, b in zip(baseline, latest)))
