"""The 95% bootstrap interval of a ratio of two medians."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Resamples per interval: enough for stable 2.5th/97.5th percentiles.
RESAMPLES = 2000
#: A fixed seed, so one JSON document always gives the same interval.
SEED = 20240601


def ratio_interval(values: Sequence[float], baselines: Sequence[float],
                   level: float = 0.95) -> tuple[float, float] | None:
    """The ``level`` bootstrap interval of ``median(values) / median(baselines)``.

    Runs of the same index come from the same round of the suite, so when both
    sides have as many runs they are resampled in pairs (what slowed one run of
    a round slowed its partner too); otherwise each side is resampled alone.

    Parameters
    ----------
    values, baselines : sequence of float
        The runs of the figure and of its baseline (positive).
    level : float
        Coverage of the interval, between 0 and 1.

    Returns
    -------
    tuple of float or None
        ``(low, high)``, or None when a side has no runs or a zero median.
    """
    v = np.asarray(values, dtype=np.float64)
    b = np.asarray(baselines, dtype=np.float64)
    if v.size == 0 or b.size == 0:
        return None
    rng = np.random.default_rng(SEED)
    picks_v = rng.integers(0, v.size, (RESAMPLES, v.size))
    picks_b = picks_v if v.size == b.size else rng.integers(0, b.size, (RESAMPLES, b.size))
    denominators = np.median(b[picks_b], axis=1)
    if not (denominators > 0).all():
        return None
    ratios = np.median(v[picks_v], axis=1) / denominators
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)
