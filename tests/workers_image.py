"""Module-level helpers and spawned child-process workers for the SharedImage tests.

Workers report through a Pipe (results, or ("error", type name, message)) and
through their exit code. Every wait has an upper bound so a hung child fails
its test instead of hanging the suite.
"""
from __future__ import annotations

import contextlib
import os
import struct
import time
from typing import Any

import numpy as np
from shmimage import NoFrameError, SharedImage, SharedMemory, SharedMemoryError
from shmimage._shmcore import segment_dir

WAIT = 30.0  # upper bound for any wait
HOLD = 120.0  # how long a child that should be killed lives if nobody kills it

# frames.h (layout 3): the control block starts the data area; its table_slots
# count is the uint32 at byte 28; the slot table begins at byte 7168 (after
# the 1 KiB head, the 4 KiB subscriber registry and the 2 KiB pinner
# registry), 128 bytes per slot, with
# the slot state as their first uint32.
TABLE_SLOTS_AT, SLOTS_AT, SLOT_SIZE, STATE_WRITING = 28, 7168, 128, 1

# Errors a worker sends back to the test instead of dying (TimeoutError is an OSError).
REPORTED = (SharedMemoryError, OSError, ValueError, AssertionError)


def shm_path(native_key: str) -> str:
    """The segment's file, wherever the core keeps them (not /dev/shm on macOS)."""
    return os.path.join(segment_dir() or "/dev/shm", native_key.lstrip("/"))


def gen_frame(shape: tuple, generation: int) -> np.ndarray:
    """A float32 frame whose every pixel carries `generation` (exact below 2**24)."""
    return np.full(shape, generation, dtype=np.float32)


def frame_generation(frame: np.ndarray) -> int:
    """The generation a uniform frame carries, or -1 when it is torn (not uniform)."""
    first = frame.flat[0]
    if not np.all(frame == first):
        return -1
    return int(first)


def writing_slots(memory: SharedMemory) -> list[int]:
    """Indexes of the frame slots whose state is WRITING, read from the raw layout."""
    data = memory.data
    try:
        nslots = min(struct.unpack_from("<I", data, TABLE_SLOTS_AT)[0], 128)
        return [
            i
            for i in range(nslots)
            if struct.unpack_from("<I", data, SLOTS_AT + i * SLOT_SIZE)[0] == STATE_WRITING
        ]
    finally:
        data.release()


class Abandon(Exception):
    """Raised inside a loan() block to publish nothing."""


def create_without_frame(image: SharedImage, shape: tuple = (4, 4)) -> None:
    """Create the image's store and publish nothing: a loan() that is abandoned."""
    with contextlib.suppress(Abandon), image.loan(shape):
        raise Abandon


def _error(exc: BaseException) -> tuple:
    return ("error", type(exc).__name__, str(exc))


# --- the example's two dialogs -----------------------------------------------


def hold_loaded_file(key: str, path: str, conn: Any, release: Any) -> None:
    """The first dialog: load a file into shared memory, stay attached until released."""
    image = SharedImage(key)
    try:
        conn.send(image.load_from_file(path))
        if not release.wait(HOLD):
            raise TimeoutError("never released")
    finally:
        image.detach()


def load_from_memory(key: str, conn: Any) -> None:
    """The second dialog: attach, copy, detach; sends ("ok", pixels) or an error."""
    try:
        conn.send(("ok", SharedImage(key).load_from_memory()))
    except REPORTED as exc:
        conn.send(_error(exc))


# --- publishing and waiting --------------------------------------------------


def publish_on_signal(key: str, go: Any, frames: list, conn: Any, release: Any) -> None:
    """Publish each frame of `frames` after `go` is set; stay attached until released."""
    image = SharedImage(key)
    try:
        if not go.wait(WAIT):
            raise TimeoutError("never told to publish")
        conn.send([image.publish(frame) for frame in frames])
        if not release.wait(WAIT):
            raise TimeoutError("never released")
    finally:
        image.detach()


def wait_for_frame(key: str, after: int, ready: Any, conn: Any) -> None:
    """Attach, say so, then wait for a frame newer than `after` and send it."""
    image = SharedImage(key)
    try:
        image.info()  # attached before the parent publishes
        ready.set()
        generation = image.wait(timeout=WAIT, after=after)
        conn.send(("ok", generation, image.read(), image.info().writer_pid))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def wait_with_timeout(key: str, timeout: float, conn: Any) -> None:
    image = SharedImage(key)
    try:
        image.wait(timeout=timeout)
        conn.send(("ok",))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def read_on_request(key: str, conn: Any) -> None:
    """A reader that stays attached: answers each request with read() and info()."""
    image = SharedImage(key)
    try:
        while conn.poll(WAIT):
            if conn.recv() == "stop":
                break
            try:
                conn.send(("ok", image.read(), image.info()))
            except REPORTED as exc:
                conn.send(_error(exc))
    finally:
        image.detach()


# --- views -------------------------------------------------------------------


def hold_view(key: str, conn: Any, release: Any) -> None:
    """Pin the latest frame with a view, report its generation, hold it until released."""
    image = SharedImage(key)
    try:
        with image.view() as frame:
            conn.send(frame_generation(frame))
            if not release.wait(WAIT):
                raise TimeoutError("never released")
            conn.send(frame_generation(frame))
    finally:
        image.detach()


def publish_while_viewed(key: str, count: int, conn: Any) -> None:
    """Publish `count` frames carrying their generation; send the generations."""
    image = SharedImage(key)
    try:
        shape = image.info().shape
        sent = []
        for _ in range(count):
            generation = image.info().generation + 1
            sent.append(image.publish(gen_frame(shape, generation), timeout=WAIT))
        conn.send(("ok", sent))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


# --- torture -----------------------------------------------------------------

STEADY_SHAPES = [(240, 320), (120, 160, 4), (480, 640), (60, 80, 3)]
STEADY_CAPACITY = 480 * 640 * 4  # the largest steady frame: the store never grows


def torture_shape(generation: int, growing: bool) -> tuple:
    """The shape of each generation's torture frame.

    Steady frames cycle through shapes that all fit. Growing frames get larger
    every 200 generations, up to 8x, then start over: the store grows ~5 times.
    """
    if not growing:
        return STEADY_SHAPES[generation % len(STEADY_SHAPES)]
    scale = 1 + (generation // 200) % 8
    return (60 * scale, 80 * scale)


def torture_writer(key: str, seconds: float, growing: bool, conn: Any) -> None:
    """Publish frames that carry their generation, every other one through loan()."""
    image = SharedImage(key)
    published = 0
    try:
        deadline = time.monotonic() + seconds
        generation = image.info().generation
        while time.monotonic() < deadline:
            generation += 1
            shape = torture_shape(generation, growing)
            if generation % 2:
                got = image.publish(gen_frame(shape, generation), timeout=WAIT)
            else:
                with image.loan(shape, np.float32, timeout=WAIT) as frame:
                    frame.fill(generation)
                got = image.info().generation
            if got != generation:
                raise AssertionError(f"published {generation}, store says {got}")
            published += 1
        conn.send(("ok", published))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


class TortureCounts:
    """What a torture reader saw; `growing` None: frames of any shape."""

    def __init__(self, growing: bool | None) -> None:
        self.growing = growing
        self.last = 0
        self.counts = dict.fromkeys(
            ["frames", "views", "torn", "backwards", "changed_in_view", "no_frame"], 0
        )

    def saw(self, frame: np.ndarray, kind: str) -> int:
        generation = frame_generation(frame)
        self.counts[kind] += 1
        wrong_shape = self.growing is not None and frame.shape != torture_shape(
            generation, self.growing
        )
        self.counts["torn"] += generation < 1 or wrong_shape
        self.counts["backwards"] += generation < self.last
        self.last = max(self.last, generation)
        return generation


def torture_round(image: SharedImage, seen: TortureCounts) -> None:
    seen.saw(image.read(), "frames")
    with image.view() as frame:
        generation = seen.saw(frame, "views")
        time.sleep(0.001)  # give the writer time to publish over the view
        seen.counts["changed_in_view"] += frame_generation(frame) != generation


def torture_reader(key: str, seconds: float, growing: bool, conn: Any) -> None:
    """read() and view() as fast as possible; count frames, torn ones and regressions.

    NoFrameError is counted, not fatal, so the report shows how often it happened
    (a store that grows must never look empty to its followers).
    """
    image = SharedImage(key)
    seen = TortureCounts(growing)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                torture_round(image, seen)
            except NoFrameError:
                seen.counts["no_frame"] += 1
        conn.send(("ok", seen.counts))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def read_until_stopped(key: str, stop: Any, conn: Any) -> None:
    """Like torture_reader, for frames of any shape, until `stop` is set."""
    image = SharedImage(key)
    seen = TortureCounts(None)
    try:
        deadline = time.monotonic() + HOLD
        while not stop.is_set() and time.monotonic() < deadline:
            torture_round(image, seen)
        conn.send(("ok", seen.counts))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


# --- crashes -----------------------------------------------------------------


def publish_forever(key: str, shape: tuple, conn: Any) -> None:
    """Publish large frames carrying their generation until killed."""
    image = SharedImage(key)
    generation = image.info().generation
    conn.send(os.getpid())
    end = time.monotonic() + HOLD
    while time.monotonic() < end:
        generation += 1
        image.publish(gen_frame(shape, generation))


def publish_once(key: str, shape: tuple, conn: Any) -> None:
    """Publish one large frame (the parent kills us in the middle), then linger."""
    image = SharedImage(key)
    conn.send(os.getpid())
    image.publish(gen_frame(shape, 1))
    time.sleep(HOLD)


def die_inside_loan(key: str, shape: tuple, value: int, conn: Any) -> None:
    """Fill half a loaned frame, say so and wait to be killed inside the block."""
    image = SharedImage(key)
    with image.loan(shape, np.float32) as frame:
        frame[: shape[0] // 2] = value
        conn.send("inside")
        time.sleep(HOLD)


# --- more writers --------------------------------------------------------------


def publish_and_leave(key: str, frame: np.ndarray, persistent: bool, conn: Any) -> None:
    """Publish one frame and exit (detaching)."""
    with SharedImage(key, persistent=persistent) as image:
        conn.send(image.publish(frame))


def loan_writer(key: str, count: int, shape: tuple, conn: Any) -> None:
    """Publish `count` frames through loan(), each carrying its own generation.

    Inside a loan the writer holds the segment's lock, so the generation its
    frame gets is the current one plus one even with other writers around.
    """
    image = SharedImage(key)
    try:
        for _ in range(count):
            with image.loan(shape, np.float32, timeout=WAIT) as frame:
                frame.fill(image.info().generation + 1)
        conn.send(("ok", count))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def view_in_forked_child(image: SharedImage, pinned: Any, go: Any, conn: Any) -> None:
    """In a forked child, through the parent's SharedImage: hold a view until told."""
    with image.view() as frame:
        pinned.set()
        if not go.wait(WAIT):
            raise TimeoutError("never told to look again")
        conn.send(frame_generation(frame))


def wait_for_first_frame(key: str, ready: Any, conn: Any) -> None:
    """Attach to a store with no frame (NoFrameError), then wait for its first one."""
    image = SharedImage(key)
    try:
        try:
            image.read()
        except NoFrameError:
            pass
        else:
            raise AssertionError("a frame was there before anything was published")
        ready.set()
        generation = image.wait(timeout=WAIT, after=0)  # the publish may come first
        conn.send(("ok", generation, image.read()))
    except REPORTED as exc:
        conn.send(_error(exc))
    finally:
        image.detach()


def loan_and_hold(key: str, shape: tuple, conn: Any, release: Any) -> None:
    """Fill a loaned frame in place with a pattern, publish it, stay attached until released."""
    image = SharedImage(key)
    try:
        with image.loan(shape) as frame:
            frame[...] = np.arange(shape[1], dtype=np.uint8)[np.newaxis, :, np.newaxis]
        conn.send(image.info().generation)
        if not release.wait(WAIT):
            raise TimeoutError("never released")
    finally:
        image.detach()


def _pin_twice_forked(key: str) -> tuple[int, int, int]:
    """A forked child (a daemonic worker cannot spawn) that pins the latest
    frame each time it reads a byte: (pid, to_child, from_child)."""
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(from_parent)  # else it never reads end-of-file
            os.close(to_parent)
            holder, kept = SharedImage(key), []
            while os.read(to_child, 1) == b"p":
                with holder.view() as pixels:
                    kept.append(pixels)
                os.write(from_child, b"k")
        finally:
            os._exit(0)
    os.close(to_child)
    os.close(from_child)
    return pid, from_parent, to_parent


def block_until_interrupted(key: str, how: str, ready: Any, conn: Any) -> None:
    """Block with no timeout in wait() or in a publish() whose every spare
    slot is pinned (by views of another process), say ("interrupted",
    seconds) when SIGINT arrives."""
    image = SharedImage(key, slots=2, max_slots=2)
    pinner = None
    try:
        image.publish(np.zeros((4, 4), np.uint8))
        if how == "publish":
            pinner = _pin_twice_forked(key)
            for _ in range(2):  # pin the latest, publish, pin again: both spares
                os.write(pinner[1], b"p")
                os.read(pinner[2], 1)
                image.publish(np.zeros((4, 4), np.uint8))
        started = time.monotonic()
        ready.set()
        try:
            if how == "wait":
                image.wait()
            else:
                image.publish(np.zeros((4, 4), np.uint8))
            conn.send(("returned",))
        except KeyboardInterrupt:
            conn.send(("interrupted", time.monotonic() - started))
    finally:
        if pinner is not None:
            os.close(pinner[1])  # the child reads end-of-file and exits
            os.waitpid(pinner[0], 0)
            os.close(pinner[2])
        image.detach()


def lock_for(key: str, seconds: float, ready: Any) -> None:
    """Hold the image's segment lock for `seconds` (as a publish would)."""
    memory = SharedMemory(key)
    memory.attach()
    try:
        with memory.locked():
            ready.set()
            time.sleep(seconds)
    finally:
        memory.detach()
