"""An asyncio consumer: a lossy subscription read with ``async for``.

A lossy subscription never slows the writer down: when the consumer falls
more than the store's ``history`` behind, it skips to the oldest kept frame
and `Subscription.dropped` counts what it missed. ``async for`` waits without
blocking the event loop (no thread per waiting call), so other tasks, here a
heartbeat, run meanwhile. Frames are zero-copy views, pinned while referenced.

    python examples/async_consumer.py --key camera --frames 50
"""
from __future__ import annotations

import argparse
import asyncio

from shmimage import SharedImage


async def heartbeat(period: float) -> None:
    """Another task on the same loop: it keeps running while frames are awaited."""
    while True:
        await asyncio.sleep(period)


async def consume(key: str, frames: int | None) -> None:
    ticker = asyncio.create_task(heartbeat(0.05))
    count = 0
    with SharedImage(key) as img, img.subscribe(start="latest") as sub:
        print(f"following {key!r}", flush=True)
        async for pixels, info in sub:  # ends when the writer ends the stream
            total = int(pixels.sum(dtype="uint64"))
            print(f"generation {info.generation} index {info.meta.get('index')} "
                  f"shape {pixels.shape} sum {total}", flush=True)
            del pixels  # unpin before waiting for the next one
            count += 1
            if count == frames:
                break
        print(f"consumed {count} frames, dropped {sub.dropped}", flush=True)
    ticker.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    args = parser.parse_args()
    asyncio.run(consume(args.key, args.frames))


if __name__ == "__main__":
    main()
