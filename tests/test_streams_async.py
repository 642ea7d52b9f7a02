"""Subscriptions under asyncio: `async for` beside other tasks, cancelled
waits that consume no frame and leave no thread behind."""
from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time

import pytest
from shmimage import SharedImage
from shmimage.waiter import WAITER
from workers_image import WAIT
from workers_streams import index_frame, publish_indexed

ctx = multiprocessing.get_context("spawn")


def waiter_stops() -> None:
    deadline = time.monotonic() + WAIT
    while WAITER.running and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not WAITER.running


def test_async_for_beside_other_tasks(procs, unique_key):
    key = unique_key("streams")
    count = 500
    with SharedImage(key, history=8) as writer:
        writer.publish(index_frame(0))
        sub = SharedImage(key).subscribe(lossless=True)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        async def main() -> list[int]:
            task = asyncio.create_task(ticker())
            parent, child = ctx.Pipe()
            procs.start(publish_indexed, key, 2, count, 8, True, child)
            got = [frame.info.meta["i"] async for frame in sub]
            task.cancel()
            assert parent.poll(WAIT) and parent.recv()[0] == "ok"
            return got

        got = asyncio.run(main())
        assert got == list(range(2, count + 2)) and sub.dropped == 0
        assert ticks > 1  # the loop kept running the other task while it waited
        sub.close()
    waiter_stops()


def test_cancelled_waits_lose_no_frame_and_leave_no_thread(unique_key):
    key = unique_key("streams")
    threads = threading.active_count()
    with SharedImage(key, history=64) as writer:
        writer.publish(index_frame(0))
        sub = SharedImage(key).subscribe()
        got: list[int] = []

        async def main() -> None:
            published = 0
            for i in range(100):
                if i % 3 == 0:  # sometimes a frame is there before the cancel
                    published += 1
                    writer.publish(index_frame(published), meta={"i": published})
                task = asyncio.create_task(sub.next_async(WAIT))
                await asyncio.sleep(0 if i % 2 else 0.001)
                task.cancel()
                try:
                    got.append((await task).info.meta["i"])
                except asyncio.CancelledError:
                    pass
            while len(got) < published:
                got.append((await sub.next_async(1.0)).info.meta["i"])

        asyncio.run(main())
        assert got == list(range(1, 35)) and sub.dropped == 0
        sub.close()
    waiter_stops()
    assert threading.active_count() == threads


def test_asyncio_run_returns_promptly_after_a_cancel(unique_key):
    key = unique_key("streams")
    with SharedImage(key) as writer:
        writer.publish(index_frame(0))
        sub = SharedImage(key).subscribe()
        cancelled = 0.0

        async def main() -> None:
            nonlocal cancelled
            task = asyncio.create_task(sub.next_async())
            await asyncio.sleep(0.05)
            task.cancel()
            cancelled = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        took = time.monotonic() - cancelled
        # The contract is 100 ms; a generous bound keeps a loaded machine green.
        assert took < 1.0, took
        sub.close()
    waiter_stops()


def test_next_async_times_out_and_reports_end_of_stream(unique_key):
    from shmimage import EndOfStream

    key = unique_key("streams")
    with SharedImage(key) as writer:
        writer.publish(index_frame(0))
        sub = SharedImage(key).subscribe()

        async def main() -> None:
            with pytest.raises(TimeoutError, match=key):
                await sub.next_async(0.05)
            writer.publish(index_frame(1))
            writer.end_stream()
            assert (await sub.next_async(1.0)).info.generation == 2
            with pytest.raises(EndOfStream):
                await sub.next_async(1.0)
            assert [f async for f in sub] == []

        asyncio.run(main())
        sub.close()
    waiter_stops()
