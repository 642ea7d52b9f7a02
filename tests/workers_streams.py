"""Spawned child-process workers for the stream tests (subscriptions).

Workers report through a Pipe and their exit code; every wait is bounded.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import time
from typing import Any

import numpy as np
from shmimage import SharedImage
from workers_image import HOLD, REPORTED, WAIT, _error

SHAPE = (4, 6)


def index_frame(index: int) -> np.ndarray:
    """A small frame whose every pixel carries `index` (exact below 2**32)."""
    return np.full(SHAPE, index, dtype=np.uint32)


def publish_indexed(key: str, first: int, count: int, history: int, end: bool, conn: Any,
                    timeout: float = WAIT, linger: bool = False) -> None:
    """Publish frames first..first+count-1 with meta {"i": index}, end the
    stream when `end`; send ("ok", last generation). With `linger`, stay
    attached until a message on `conn`."""
    image = SharedImage(key, history=history)
    try:
        gen = 0
        for i in range(first, first + count):
            gen = image.publish(index_frame(i), meta={"i": i}, timeout=timeout)
        if end:
            image.end_stream()
        conn.send(("ok", gen))
        if linger:
            conn.poll(WAIT)
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def record(key: str, start: str, slow: float, copy: bool, ready: Any, conn: Any,
           lossless: bool = False) -> None:
    """Subscribe, say "ready", then take frames until the stream ends,
    sleeping up to `slow` seconds at random between frames. Sends ("ok",
    [(generation, meta index, pixel index, pixels uniform)], dropped)."""
    rng = random.Random()
    try:
        with SharedImage(key).subscribe(lossless=lossless, start=start, copy=copy) as sub:
            ready.send("ready")
            got = []
            for frame in sub:
                px = frame.pixels
                got.append((frame.info.generation, frame.info.meta.get("i"), int(px.flat[0]),
                            bool((px == px.flat[0]).all())))
                del frame, px
                if slow:
                    time.sleep(rng.uniform(0, slow))
            conn.send(("ok", got, sub.dropped))
    except REPORTED as exc:
        conn.send(_error(exc))


def take_after(key: str, go: Any, count: int, conn: Any) -> None:
    """Subscribe ("next"), say "ready", wait for "go", then take `count`
    frames; send ("ok", [meta index], dropped)."""
    try:
        with SharedImage(key).subscribe() as sub:
            go.send("ready")
            if not go.poll(WAIT):
                raise AssertionError("no go")
            go.recv()
            got = [sub.next(timeout=WAIT).info.meta["i"] for _ in range(count)]
            conn.send(("ok", got, sub.dropped))
    except REPORTED as exc:
        conn.send(_error(exc))


def hold_lossless(key: str, conn: Any, take: Any, lossless: bool = True) -> None:
    """Subscribe (lossless unless told), say "ready", then take one frame
    per message on `take` (None: stop), answering each with its generation."""
    try:
        with SharedImage(key).subscribe(lossless=lossless) as sub:
            conn.send("ready")
            while take.poll(WAIT):
                if take.recv() is None:
                    break
                conn.send(sub.next(timeout=WAIT).info.generation)
    except REPORTED as exc:
        conn.send(_error(exc))


def growing_frame(index: int) -> np.ndarray:
    """Frame `index` of a stream whose frames grow mid-stream and shrink
    back: small, then a run of large ones (a bigger store), then small
    again (16 small frames in a row shrink it), in cycles of 120."""
    shape = (96, 128) if index % 120 >= 60 else SHAPE
    return np.full(shape, index, dtype=np.uint32)


def publish_growing(key: str, first: int, count: int, history: int, conn: Any) -> None:
    """As publish_indexed with growing_frame, then end the stream; sends
    ("ok", last generation, stores replaced meanwhile)."""
    image = SharedImage(key, history=history)
    try:
        gen, moved, store = 0, 0, None
        for i in range(first, first + count):
            gen = image.publish(growing_frame(i), meta={"i": i}, timeout=WAIT)
            now = image._store
            moved += store is not None and now is not store
            store = now
        image.end_stream()
        conn.send(("ok", gen, moved))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


BIG = (512, 512)  # 1 MiB of uint32: a publish long enough to be killed inside


def write_then_die(key: str, count: int, how: str, conn: Any) -> None:
    """Publish `count` indexed frames after the latest generation (each
    carries the generation it gets), then die mid-publish: `how` "loan":
    inside a loan block, half filled with junk, after saying "inside";
    "publish": keep publishing large indexed frames until killed."""
    image = SharedImage(key)
    first = image.info().generation + 1
    for i in range(first, first + count):
        image.publish(index_frame(i), meta={"i": i}, timeout=WAIT)
    if how == "loan":
        with image.loan(SHAPE, np.uint32, meta={"i": -1}) as frame:
            frame[: SHAPE[0] // 2] = 0xDEAD
            conn.send("inside")
            time.sleep(HOLD)
    conn.send("publishing")
    i = first + count
    while True:
        image.publish(np.full(BIG, i, np.uint32), meta={"i": i}, timeout=WAIT)
        i += 1


def continue_indexed(key: str, count: int, conn: Any) -> None:
    """A new writer on the key: `count` indexed frames after the latest
    generation (each frame carries the generation it must get), then the
    end of the stream; sends ("ok", first generation, last generation)."""
    image = SharedImage(key)
    try:
        first = image.info().generation + 1
        for i in range(first, first + count):
            gen = image.publish(index_frame(i), meta={"i": i}, timeout=WAIT)
            if gen != i:
                raise AssertionError(f"generation {gen}, expected {i}")
        image.end_stream()
        conn.send(("ok", first, first + count - 1))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def take_inherited(sub: Any, key: str, count: int, conn: Any) -> None:
    """In a forked child, through the parent's Subscription: take `count`
    frames, then close it; sends ("ok", generations, whether this process
    was listed as a lossless subscriber meanwhile)."""
    try:
        gens = [sub.next(timeout=WAIT).info.generation for _ in range(count)]
        with SharedImage(key) as image:
            listed = any(s["pid"] == os.getpid() and s["mode"] == "lossless"
                         for s in image.status()["subscribers"])
        sub.close()
        conn.send(("ok", gens, listed))
    except REPORTED as exc:
        conn.send(_error(exc))


def publish_resizing(key: str, seed: float) -> None:
    """Publish until killed (HOLD at most): mostly small frames, now and
    then a large one, so the store grows and shrinks again and again."""
    rng = random.Random(seed)
    image = SharedImage(key, history=4)
    end = time.monotonic() + HOLD
    i = 0
    while time.monotonic() < end:
        i += 1
        shape = (rng.choice([64, 128, 256]), 256) if rng.random() < 0.08 else SHAPE
        try:
            image.publish(np.full(shape, i, np.uint32), timeout=2.0)
        except TimeoutError:
            pass  # a subscriber stopped for long: the writer waits, drops nothing


def _where_it_stood(sub: Any) -> dict[str, Any]:
    """What a failing lossless test reports of a gap: the store the
    subscription was on and the registry as the writers see it."""
    store = sub._store
    try:
        subscribers = sub._image.status()["subscribers"]
    except Exception as exc:  # noqa: BLE001 - a report, not a check
        subscribers = repr(exc)
    return {"pid": os.getpid(), "store_generation": store.generation if store else None,
            "superseded": bool(store and store.superseded), "entry": sub._entry,
            "subscribers": subscribers}


def follow_lossless(key: str, ready: Any, stop: Any, conn: Any) -> None:
    """Subscribe losslessly, say "ready", take frames until told to stop;
    send ("ok", frames taken, [(generation, next one taken, where)] gaps, dropped)."""
    rng = random.Random()
    try:
        with SharedImage(key).subscribe(lossless=True) as sub:
            ready.send("ready")
            taken, last, gaps = 0, 0, []
            while not stop.poll():
                try:
                    gen = sub.next(timeout=0.1).info.generation
                except TimeoutError:
                    continue
                if last and gen != last + 1:
                    gaps.append((last, gen, _where_it_stood(sub)))
                last, taken = gen, taken + 1
                if rng.random() < 0.02:
                    time.sleep(rng.uniform(0, 0.01))  # slow now and then: writers wait
            conn.send(("ok", taken, gaps, sub.dropped))
    except REPORTED as exc:
        conn.send(_error(exc))


# -- the test side: started with the `procs` fixture --

def receive(conn: Any, what: str) -> Any:
    """The child's next message; a child that failed or went quiet fails the test."""
    assert conn.poll(WAIT), f"child sent no {what}"
    msg = conn.recv()
    assert not (isinstance(msg, tuple) and msg[0] == "error"), msg
    return msg


def start_holder(procs: Any, key: str) -> tuple[Any, Any, Any]:
    """A `hold_lossless` child, registered: its process, its pipe, its take pipe."""
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    take, take_child = ctx.Pipe()
    proc = procs.start(hold_lossless, key, child, take_child)
    assert receive(conn, "ready") == "ready"
    return proc, conn, take
