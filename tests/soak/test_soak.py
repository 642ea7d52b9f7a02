"""A few seconds of the soak inside the suite: its invariants hold.

The long runs are `python -m tests.soak` (CI: .ci/checks/20-reliability.sh).
"""
from __future__ import annotations

import importlib.util
import random
import sys
from typing import Any

import numpy as np
import pytest

from . import frames
from .supervisor import DEFAULT_ROSTER, FD_SLACK, MAPS_SLACK, RSS_BOUND_MIB, Supervisor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SECONDS = 8.0


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return Supervisor(SECONDS, random.randrange(1 << 31), DEFAULT_ROSTER, log=False).run()


def test_soak_survives_kills_and_stops(summary: dict[str, Any]) -> None:
    print(summary)  # shown on failure
    assert summary["kills"] > 0 and summary["stops"] > 0
    assert summary["processes"] > summary["participants"], "killed participants were restarted"
    assert summary["frames_published"] > 0 and summary["frames_checked"] > 0
    assert summary["torn"] == 0
    assert summary["backwards"] == 0
    assert summary["cancelled_seen"] == 0
    assert summary["views_changed"] == 0
    assert summary["leaked"] == 0
    assert summary["blocked"] == 0
    assert summary["unexpected_exits"] == 0
    assert summary["errors"] == 0, summary["error_samples"]


def test_soak_streams_and_the_bridge_checked_frames(summary: dict[str, Any]) -> None:
    print(summary)  # shown on failure
    assert summary["lossless_frames"] > 0 and summary["lossy_frames"] > 0
    assert summary["dropped_miscounted"] == 0, summary["error_samples"]
    if importlib.util.find_spec("zmq") is not None:
        assert summary["frames_served"] > 0 and summary["frames_relayed"] > 0
        assert summary["relayed_frames_checked"] > 0
        assert summary["net_rejected"] == 0


def test_soak_lossless_subscribers_miss_nothing(summary: dict[str, Any]) -> None:
    assert summary["lossless_gaps"] == 0, summary["error_samples"]
    assert summary["lossless_missed"] == 0


def test_soak_survivors_do_not_grow(summary: dict[str, Any]) -> None:
    assert summary["survivors_measured"] > 0
    assert summary["max_fd_growth"] <= FD_SLACK
    assert summary["max_maps_growth"] <= MAPS_SLACK
    assert summary["max_rss_growth_mib"] <= RSS_BOUND_MIB


def test_soak_kept_views_and_loans_stay_true(summary: dict[str, Any]) -> None:
    assert summary["kept_views_changed"] == 0
    assert summary["loans_left_writable"] == 0


def test_frame_check_catches_what_the_soak_counts() -> None:
    rng = np.random.default_rng(1)
    a = frames.make(rng, 1)
    b = np.empty_like(a)
    frames.fill(b, rng, 2)
    frames.seal(a, 7)
    frames.seal(b, 8)
    assert frames.check(a) == frames.Verdict(True, frames.MAGIC, 1, 7)
    flipped = a.copy()
    flipped.reshape(-1)[-1] ^= 1
    assert not frames.check(flipped).ok
    mixed = a.copy()
    mixed[a.shape[0] // 2:] = b[a.shape[0] // 2:]  # half of each: a torn publish
    assert not frames.check(mixed).ok
    assert not frames.check(a[: a.shape[0] // 2]).ok  # cut short
    frames.seal(c := frames.make(rng, 3, frames.CANCELLED), 9)
    assert frames.check(c).magic == frames.CANCELLED


def test_watchdog_sees_a_participant_that_hangs() -> None:
    summary = Supervisor(5.0, 1, [("Sleeper", True), ("CopyReader", True)], log=False).run()
    assert summary["blocked"] >= 1
    assert any(v.startswith("blocked") for v in summary["violations"])
    assert summary["leaked"] == 0
