"""Spawned child-process workers for the frame-semantics tests (pins that
live as long as the arrays, slots, facts tied to pixels, waits).

Workers report through a Pipe and their exit code; every wait is bounded.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from shmimage import SharedImage
from workers_image import REPORTED, WAIT, _error, frame_generation, gen_frame


def publish_frames(key: str, shape: tuple, count: int, conn: Any, timeout: float = WAIT) -> None:
    """Publish `count` frames carrying their generation; send ("ok", seconds)."""
    image = SharedImage(key)
    try:
        started = time.monotonic()
        for _ in range(count):
            generation = image.info().generation + 1
            image.publish(gen_frame(shape, generation), timeout=timeout)
        conn.send(("ok", time.monotonic() - started))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def keep_views_out_of_phase(key: str, phase: float, stop: Any, conn: Any) -> None:
    """Keep each view() array for 50 ms, starting `phase` seconds late; check
    each stays the frame it was when taken. Send ("viewing",) once the first
    view is kept, then ("ok", views, bad)."""
    image = SharedImage(key)
    views = bad = 0
    try:
        time.sleep(phase)
        while not stop.is_set():
            with image.view() as pixels:
                first = frame_generation(pixels)
            time.sleep(0.05)  # the array outlives its block, pinned
            if first < 0 or frame_generation(pixels) != first:
                bad += 1
            views += 1
            if views == 1:
                conn.send(("viewing",))
            del pixels
        conn.send(("ok", views, bad))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def pin_and_wait(key: str, count: int, conn: Any, hold: float) -> None:
    """Keep `count` view() arrays of successive frames (the parent publishes
    between them when told), report, then sleep (to be SIGKILLed)."""
    image = SharedImage(key)
    kept = []
    for _ in range(count):
        conn.recv()
        with image.view() as pixels:
            kept.append(pixels)
        conn.send(frame_generation(pixels))
    time.sleep(hold)


def exit_with_live_views(key: str, conn: Any) -> None:
    """Keep view() and loan() arrays alive up to interpreter exit."""
    image = SharedImage(key)
    with image.view() as pixels:
        pass
    with image.loan((8, 8)) as mine:
        mine[...] = 5
    derived = pixels[1:, 1:]
    conn.send((frame_generation(derived), int(mine.sum())))
    global KEPT
    KEPT = (image, pixels, derived, mine)  # alive until the interpreter ends


def facts_match_pixels(key: str, count: int, conn: Any) -> None:
    """read_frame()/view_frame() while another process publishes: every
    frame's info.generation and meta must be those of its pixels."""
    image = SharedImage(key)
    out = None
    checked = mismatched = 0
    try:
        image.info()  # attached
        conn.send("ready")
        last = 0
        while last < count:
            if checked % 2:
                frame = image.read_frame(out=out)
                out = frame.pixels
            else:
                with image.view_frame() as frame:
                    pass
            pixels, info = frame
            gen = frame_generation(pixels)
            if gen != info.generation or info.meta.get("generation") != gen:
                mismatched += 1
            last = info.generation
            checked += 1
        conn.send(("ok", checked, mismatched))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def create_later(key: str, delay: float, conn: Any) -> None:
    """Create the key after `delay` seconds, publish one frame, stay a while."""
    time.sleep(delay)
    image = SharedImage(key)
    try:
        generation = image.publish(np.full((4, 4), 7, np.uint8))
        conn.send(("ok", generation))
        conn.poll(WAIT)  # until the parent has seen it
    finally:
        image.detach()


def pid() -> int:
    return os.getpid()


def pin_both_spares(image: SharedImage, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Into a slots=max_slots=2 store: publish generations 1 to 3, keeping
    views of 1 and 2. With the latest kept, every spare is pinned by them."""
    image.publish(gen_frame(shape, 1))
    with image.view() as first:
        pass
    image.publish(gen_frame(shape, 2))
    with image.view() as second:
        pass
    image.publish(gen_frame(shape, 3))
    return first, second


def pin_every_slot_then_publish(key: str, conn: Any) -> None:
    """In one thread: pin every spare of a slots=max_slots=2 store, then
    publish with no timeout. Send what publish and loan raised (or "ok")."""
    shape = (48, 64)
    image = SharedImage(key, slots=2, max_slots=2)
    try:
        first, second = pin_both_spares(image, shape)
        outcome = []
        for attempt in ("publish", "loan"):
            try:
                if attempt == "publish":
                    image.publish(gen_frame(shape, 4))
                else:
                    with image.loan(shape, np.float32):
                        pass
                outcome.append("ok")
            except BufferError as exc:
                outcome.append(f"BufferError: {exc}")
        outcome.append(frame_generation(first) * 10 + frame_generation(second))
        conn.send(("ok", outcome))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()
