"""The bench's stream figure, really run: one writer and 4 lossless subscribers, each a
process, shmimage beside iceoryx2. Small frames and a few runs; no timing is asserted."""
from __future__ import annotations

import math
import multiprocessing
from typing import Callable

import pytest
import workers_bench
from shmimage.bench import methods_streams as ms
from shmimage.bench import sandbox
from shmimage.bench.optional import missing
from shmimage.bench.pool import Reader, ReaderPool

MISSING = missing()


def _writers(pool: ReaderPool, names: list[str]) -> dict[str, Reader]:
    ctx = multiprocessing.get_context("spawn")
    return {name: Reader(ctx, pool.lock) for name in names}


def _spawner(pool: ReaderPool) -> Callable[[], Reader]:
    ctx = multiprocessing.get_context("spawn")
    return lambda: Reader(ctx, pool.lock)


def test_every_frame_reaches_4_subscribers_in_order() -> None:
    names = [n for n in ms.SYSTEMS if n not in MISSING]
    with sandbox.isolated() as home, ReaderPool(ms.SUBSCRIBERS) as pool:
        got = ms.stream_runs(_spawner(pool), pool.readers, names, warmup=1, runs=3, frames=40,
                             size="64x48")
    assert not got.failed and not got.stalls, (got.failed, got.stalls)
    for name in names:
        assert len(got.wall[name]) == len(got.cpu[name]) == 3
        assert all(0 < t < 60 and math.isfinite(t) for t in got.wall[name] + got.cpu[name])
    assert not sandbox.leftovers(home.prefix), "iceoryx2 files left in /dev/shm"


@pytest.mark.skipif("iceoryx2" in MISSING, reason="iceoryx2 is not installed")
def test_a_stalled_iceoryx2_is_restarted_on_a_new_service(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = ms._one_run
    stalled: list[Reader] = []

    def stall_once(writer: Reader, readers: list[Reader], name: str,
                   frames: int) -> tuple[float, float]:
        if name == ms.ICEORYX2 and not stalled:
            stalled.append(writer)
            writer.process.kill()  # as _one_run does with a writer that stalls
            raise ms.Stalled("iceoryx2's writer stalled (simulated) and was killed")
        return real(writer, readers, name, frames)

    monkeypatch.setattr(ms, "_one_run", stall_once)
    with sandbox.isolated(), ReaderPool(ms.SUBSCRIBERS) as pool:
        got = ms.stream_runs(_spawner(pool), pool.readers, list(ms.SYSTEMS), warmup=1, runs=3,
                             frames=30, size="64x48")
    # The simulated stall only: the replacement writer and shmimage's never stall.
    assert got.stalls == {ms.ICEORYX2: 1} and not got.failed, (got.stalls, got.failed)
    # The stall hit the (uncounted) warm-up run; the new writer did all 3 counted ones.
    assert len(got.wall[ms.ICEORYX2]) == 3
    assert len(got.wall[ms.SHMIMAGE]) == 3 and not stalled[0].process.is_alive()


def test_a_gap_or_a_drop_fails_the_run() -> None:
    seen = ms._Seen(5)
    seen.check(5)
    with pytest.raises(ms.DroppedFrames, match="expected frame 6, got 7"):
        seen.check(7)
    with pytest.raises(ms.DroppedFrames, match="dropped 1"):
        ms._Seen(1).check(1, dropped=1)


def test_a_stalled_writer_is_killed_and_the_subscribers_resync(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ms, "RUN_SECONDS", 1.0)
    with sandbox.isolated(), ReaderPool(ms.SUBSCRIBERS) as pool:
        stuck, good = _writers(pool, ["stuck", ms.SHMIMAGE]).values()
        try:
            stuck.setup(f"{workers_bench.__name__}:StuckWriter", {})
            good.setup(f"{ms.__name__}:WriterRole",
                       {"shape": (48, 64, 4), "system": ms.SHMIMAGE, "place": {}})
            args = good.request("call", "reader_args", ())
            roles = {"shape": (48, 64, 4), "image": args, "iceoryx": None}
            pool.readers[0].request("setup", f"{ms.__name__}:StreamRoles", roles)
            for reader in pool.readers[1:]:
                reader.setup(f"{ms.__name__}:StreamRoles", roles)
            with pytest.raises(ms.Stalled, match="killed"):
                ms._one_run(stuck, pool.readers, ms.SHMIMAGE, 10)
            assert not stuck.process.is_alive() or stuck.process.join(5) is None
            # The subscribers answered (their own timeout): the next run goes through.
            wall, cpu = ms._one_run(good, pool.readers, ms.SHMIMAGE, 10)
            assert wall > 0 and cpu > 0
            good.teardown()
            for reader in pool.readers:
                reader.teardown()
        finally:
            stuck.close()
            good.close()


class _EarlyListener:
    """A listener whose ``timed_wait`` returns at once with no event, as iceoryx2's can."""

    def __init__(self) -> None:
        self.calls = 0

    def timed_wait(self, timeout: object) -> list[object]:
        self.calls += 1
        return []


@pytest.mark.skipif("iceoryx2" in MISSING, reason="iceoryx2 is not installed")
def test_an_empty_early_wakeup_is_not_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ms, "WAIT_SECONDS", 0.2)
    roles = ms.StreamRoles((48, 64, 4), None, None)
    roles.listener = _EarlyListener()
    until = roles._wait_iceoryx(0.0)
    while True:  # the subscriber's loop, with a buffer that stays empty
        try:
            until = roles._wait_iceoryx(until)
        except TimeoutError as exc:
            assert "no iceoryx2 sample within 0.2 s" in str(exc)
            break
    # It waited on: an empty return used to end it at the first call.
    assert roles.listener.calls > 1
