"""The bench's peers (iceoryx2, pyzmq, imagezmq) and the own-wake-up round trips, really run.

Tiny frames and a few runs in real spawned processes: every method must give
positive, finite wall and CPU times, and leave nothing behind, neither in
/dev/shm nor in iceoryx2's root folder. No timing is asserted. A method whose
peer is not installed is skipped with the reason.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shmimage.bench import methods_shmimage, sandbox
from shmimage.bench.build import IOX, OWN, WAKE_PAIRS
from shmimage.bench.frames import SIZES, make_frame, parse_size
from shmimage.bench.measure import (
    PING_1X1,
    ROUND_TRIPS,
    WAKE_TRIPS,
    ZERO_COPY_TRIPS,
    wake_trips,
)
from shmimage.bench.optional import missing
from shmimage.bench.pool import ReaderPool
from shmimage.bench.roundtrip import Writer, round_trip
from shmimage.bench.roundtrip_wake import interleaved

MISSING = missing()
#: Methods this file covers: every peer of the new kinds and shmimage's own.
PIPE_METHODS = [name for name in ROUND_TRIPS
                if name.startswith(("shmimage", "iceoryx2", "pyzmq", "imagezmq"))]
DEFAULT_IOX_ROOT = Path(tempfile.gettempdir(), "iceoryx2")


def _frame() -> np.ndarray:
    return make_frame(24, 32)


def _needs(name: str, methods: dict[str, Any]) -> None:
    need = methods[name][1]
    if need in MISSING:
        pytest.skip(f"{need}: {MISSING[need]}")


def _nothing_left(home: sandbox.Home) -> None:
    assert not sandbox.leftovers(home.prefix), "peer files left in /dev/shm"
    assert not os.path.exists(home.folder), "the run's folder was not removed"


@pytest.mark.parametrize("name", PIPE_METHODS)
def test_pipe_signalled_round_trip(name: str) -> None:
    _needs(name, ROUND_TRIPS)
    factory = ROUND_TRIPS[name][0]
    iox_root_before = DEFAULT_IOX_ROOT.exists()
    with sandbox.isolated() as home, ReaderPool(1) as pool:
        with factory(_frame()) as writer:
            got = round_trip(writer, pool.readers, warmup=1, runs=3)
        if name.startswith("iceoryx2"):
            assert os.listdir(os.path.join(home.iceoryx2_root, "services")) == [], \
                "iceoryx2 services outlive their ports"
    assert len(got["rt"]) == 3 and all(0 < t < 60 for t in got["rt"]), got
    _nothing_left(home)
    assert DEFAULT_IOX_ROOT.exists() == iox_root_before, "iceoryx2 used its default root"


def test_own_wake_ups_interleaved_with_cpu_time() -> None:
    usable = {name: factory for name, (factory, need) in WAKE_TRIPS.items()
              if need not in MISSING}
    frame = _frame()
    exchanges = {name: wake_trips(name, frame.nbytes) for name in usable}
    with sandbox.isolated() as home, ReaderPool(1) as pool:
        writers: dict[str, Writer] = {}
        try:
            for name, factory in usable.items():
                writers[name] = factory(frame)
            if any(name.startswith("iceoryx2") for name in writers):
                assert any(Path(home.iceoryx2_root).rglob("*")), "iceoryx2 is not in our root"
                assert sandbox.leftovers(home.prefix), "iceoryx2 uses another /dev/shm prefix"
            got = interleaved(pool.readers[0], writers, warmup=1, runs=3, exchanges=exchanges)
        finally:
            for writer in writers.values():
                writer.close()
    assert got.failed == {}
    assert set(got.wall) == set(got.cpu) == set(usable)
    for name in usable:
        assert len(got.wall[name]) == len(got.cpu[name]) == 3, name
        for wall, cpu in zip(got.wall[name], got.cpu[name]):
            assert 0 < wall < 60 and math.isfinite(cpu) and cpu > 0, (name, wall, cpu)
    _nothing_left(home)


class _NoSuchFrames(Writer):
    """A reader side that cannot be built: its key names no segment."""

    reader_role = methods_shmimage.ImageWriter.reader_role

    def reader_args(self) -> dict[str, Any]:
        return {"key": "shb-no-such-key", "mode": "read-out", "ack": "shb-no-such-ack"}


def test_a_method_whose_reader_fails_is_reported_and_the_others_run() -> None:
    with sandbox.isolated() as home, ReaderPool(1) as pool, \
            methods_shmimage.ImageWriter(_frame(), "view") as good:
        got = interleaved(pool.readers[0], {"bad": _NoSuchFrames(), "good": good},
                          warmup=1, runs=2, exchanges=2)
    assert "NotFoundError" in got.failed.get("bad", "")
    assert list(got.wall) == ["good"] and len(got.wall["good"]) == 2
    _nothing_left(home)


def test_sandbox_removes_what_a_dead_reader_left() -> None:
    """A reader killed while it holds iceoryx2 ports leaves its files: the sandbox removes them."""
    if "iceoryx2" in MISSING:
        pytest.skip(f"iceoryx2: {MISSING['iceoryx2']}")
    with sandbox.isolated() as home:
        with ReaderPool(1) as pool:
            writer = ROUND_TRIPS["iceoryx2 receive+view"][0](_frame())
            try:
                pool.readers[0].setup(writer.reader_role, writer.reader_args())
                pool.readers[0].process.kill()
                pool.readers[0].process.join(30)
            finally:
                writer.close()
        assert sandbox.leftovers(home.prefix)
    _nothing_left(home)


def test_copies_take_fewer_trips_per_run_as_the_frame_grows() -> None:
    assert wake_trips(OWN["read"], 32 * 24 * 4) == 20
    assert wake_trips(OWN["read"], 640 * 480 * 4) == 20
    assert wake_trips(OWN["view"], 1920 * 1080 * 4) == 6
    assert wake_trips(IOX["read"], 3840 * 2160 * 4) == 2


@pytest.mark.parametrize("size", SIZES)
def test_zero_copy_round_trips_run_many_trips_at_every_size(size: str) -> None:
    nbytes = make_frame(*parse_size(size)).nbytes
    for name in (OWN["loan"], IOX["loan"], PING_1X1):
        assert wake_trips(name, nbytes) == ZERO_COPY_TRIPS >= 20, (name, size)


@pytest.mark.parametrize("size", [*SIZES, "32x24"])
def test_both_sides_of_every_own_wake_up_ratio_run_as_many_trips(size: str) -> None:
    nbytes = make_frame(*parse_size(size)).nbytes
    assert {fid for fid, *_ in WAKE_PAIRS} >= {"loan/iceoryx2", "loan/wake", "view/pyzmq"}
    for fid, own, peer, _ in WAKE_PAIRS:
        assert own in WAKE_TRIPS and peer in WAKE_TRIPS, fid
        assert wake_trips(own, nbytes) == wake_trips(peer, nbytes), (fid, size)
