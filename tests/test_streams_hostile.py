"""Subscriptions on a hostile segment: lying history ring or subscriber
registry -> IncompatibleSegmentError, never a crash or a hang."""
from __future__ import annotations

import pytest
from shmimage import IncompatibleSegmentError, SharedImage
from test_reliability_hostile import field, mutate, planted, probe, real_segment

RING_LIES = {
    "ring names no slot": (1 << 8) | 201,
    "ring runs ahead of latest": (5 << 8) | 2,
    "ring all ones": 2**64 - 1,
}

REGISTRY_LIES = {
    "unknown state": [(field("sub0.state"), 7)],
    "position beyond the stream": [(field("sub0.state"), 1), (field("sub0.next_generation"), 2**60)],
    "unknown flags": [(field("sub0.state"), 1), (field("sub0.flags"), 0x80)],
}


@pytest.mark.parametrize("case", sorted(RING_LIES))
def test_lying_ring_is_refused_by_a_subscription(unique_key, case) -> None:
    key = unique_key()
    raw = mutate(real_segment(), [(field("frm.ring0"), RING_LIES[case])])
    with planted(SharedImage(key).native_key, raw):
        reader = SharedImage(key)
        with reader.subscribe(start="oldest") as sub, pytest.raises(IncompatibleSegmentError):
            sub.next(1.0)
        reader.detach()
        outcome, details = probe(key)
    assert outcome == "ok", details


@pytest.mark.parametrize("case", sorted(REGISTRY_LIES))
def test_lying_registry_is_refused_by_status(unique_key, case) -> None:
    key = unique_key()
    raw = mutate(real_segment(), REGISTRY_LIES[case])
    with planted(SharedImage(key).native_key, raw):
        with SharedImage(key) as image, pytest.raises(IncompatibleSegmentError):
            image.status()
        outcome, details = probe(key)
    assert outcome == "ok", details
