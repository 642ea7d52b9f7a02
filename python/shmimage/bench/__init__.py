"""The benchmark suite (``shmimage bench``, ``python -m shmimage.bench``).

Every figure is the median of repeated runs after warm-up, reported as a ratio
to a baseline measured in the same process and the same run, with the ratio's
95% bootstrap interval. The suite measures and reports; it judges nothing.
"""
from __future__ import annotations

from .cli import main

__all__ = ["main"]
