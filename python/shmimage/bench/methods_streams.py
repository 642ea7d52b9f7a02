"""The stream figure: one writer, every frame to 4 lossless subscriber processes.

shmimage: a store with ``history=8``; the writer ``loan()``s each frame and
stamps its index in the first pixel; each subscriber is
``subscribe(lossless=True)`` and looks at every frame in place (a pinned
view), so the writer waits for the slowest, sleeping in the kernel.

iceoryx2, configured the same way: a publish-subscribe service with history
8, subscriber buffers of 8 and no overflow; the publisher blocks when a
buffer is full (``BackpressureStrategy.RetryUntilDelivered``, iceoryx2's
``UnableToDeliverStrategy::Block``), loans each sample
(``loan_slice_uninit``), stamps its index and sends it, then notifies an
event; each subscriber sleeps on that event's listener and then takes every
sample there is, viewing it through numpy.

The writer is a process of its own, as each subscriber is. A run is
``frames`` frames: wall time from the writer's first loan to the last
subscriber's last frame (one monotonic clock for all processes), and CPU
time of all five processes. Every subscriber checks that it saw each index
once, in order: a gap or a dropped count fails the run, so a figure exists
only with 0 dropped on both sides. A writer that does not finish a run in
time is killed and that system's figure fails with the reason (what each
subscriber said); the other system goes on. (iceoryx2's writer used to: a
subscriber took an early, empty return of its listener's ``timed_wait`` for
a timeout and stopped taking samples while its port stayed connected, so
the blocking publisher waited on its full buffer for good.)
"""
from __future__ import annotations

import ctypes
import dataclasses
import sys
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from .. import SharedImage
from . import interrupt
from .frames import make_frame, parse_size, unique_name
from .methods_iceoryx2 import make_node
from .pool import Reader, ReaderError, ReaderFailed, playing
from .sandbox import home

SIZE = "1920x1080"
SUBSCRIBERS = 4
HISTORY = 8
SHMIMAGE, ICEORYX2 = "shmimage", "iceoryx2"
SYSTEMS = (SHMIMAGE, ICEORYX2)
#: Frames per run: some tens of milliseconds, so a run's start and end are a small part.
FRAMES = 300
READY = b"r"
READY_TIMEOUT = 30.0
#: A subscriber's longest wait for one frame, and the writer's for one run.
#: (A run takes some tens of milliseconds: these are for what never ends.)
WAIT_SECONDS = 2.0
RUN_SECONDS = 4.0
#: iceoryx2 writers that may stall (and be replaced) in one call before its figure fails.
MAX_STALLS = 1
_INDEX = ctypes.c_uint32


class DroppedFrames(RuntimeError):
    """A subscriber missed a frame or saw one out of order."""


# -- the writers (in the suite's process) --------------------------------------------------

class ImageStreamWriter:
    """shmimage: ``loan()`` a frame, stamp its index, leave the block (publish)."""

    def __init__(self, frame: np.ndarray) -> None:
        self.shape, self.count = frame.shape, 0
        self.key = unique_name("t")
        self.image = SharedImage(self.key, history=HISTORY, capacity=frame.nbytes)
        self.image.publish(frame)  # the store exists before anyone subscribes

    def reader_args(self) -> dict[str, Any]:
        return {"key": self.key}

    def send(self) -> None:
        self.count += 1
        with self.image.loan(self.shape, timeout=WAIT_SECONDS) as pixels:
            pixels[0, 0] = _stamp(self.count)

    def close(self) -> None:
        self.image.detach()


class IceoryxStreamWriter:
    """iceoryx2: loan a sample, stamp its index, send (blocking on full buffers), notify."""

    def __init__(self, frame: np.ndarray, place: dict[str, str]) -> None:
        import iceoryx2 as iox2

        self.nbytes, self.count = frame.nbytes, 0
        self.args: dict[str, Any] = {**place, "nbytes": frame.nbytes}
        self.ports: Any = _StreamPorts(**self.args, create=True)
        self.publisher = (self.ports.frames.publisher_builder()
                          .initial_max_slice_len(frame.nbytes).max_loaned_samples(1)
                          .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
                          .create())
        self.notifier = self.ports.event.notifier_builder().create()

    def reader_args(self) -> dict[str, Any]:
        return dict(self.args)

    def send(self) -> None:
        self.count += 1
        sample = self.publisher.loan_slice_uninit(self.nbytes)
        _INDEX.from_address(sample.payload_ptr).value = self.count
        sample.assume_init().send()
        self.notifier.notify()

    def close(self) -> None:
        self.notifier = self.publisher = None
        self.ports.close()


class _StreamPorts:
    """A node, the frame service (history, buffers, no overflow) and its event service."""

    def __init__(self, root: str, prefix: str, name: str, nbytes: int, create: bool) -> None:
        import iceoryx2 as iox2

        self.node = make_node(root, prefix)
        frames = (self.node.service_builder(iox2.ServiceName.new(name))
                  .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                  .max_publishers(1).max_subscribers(SUBSCRIBERS)
                  .history_size(HISTORY).subscriber_max_buffer_size(HISTORY)
                  .subscriber_max_borrowed_samples(1).enable_safe_overflow(False))
        self.frames = frames.create() if create else frames.open()
        event = self.node.service_builder(iox2.ServiceName.new(name + ".frames")).event()
        self.event = event.create() if create else event.open()
        self.array_type = ctypes.c_uint8 * nbytes

    def close(self) -> None:
        self.frames = self.event = None
        self.node = None


def _stamp(index: int) -> np.ndarray:
    return np.frombuffer(index.to_bytes(4, "little"), np.uint8)


def _index_of(pixels: np.ndarray) -> int:
    return int.from_bytes(pixels[0, 0].tobytes(), "little")


# -- the subscribers (in the pool's reader processes) --------------------------------------

class _Seen:
    """The order check: each index once, in order, from the first one of a run."""

    def __init__(self, first: int) -> None:
        self.expected = first

    def check(self, index: int, dropped: int = 0) -> None:
        if index != self.expected or dropped:
            raise DroppedFrames(f"expected frame {self.expected}, got {index} "
                                f"(dropped {dropped})")
        self.expected += 1


class StreamRoles:
    """A subscriber of each system, built once per size; ``serve`` takes one run's frames."""

    def __init__(self, shape: tuple[int, ...], image: dict[str, Any] | None,
                 iceoryx: dict[str, Any] | None) -> None:
        self.shape = tuple(shape)
        self.taken = {SHMIMAGE: 0, ICEORYX2: 0}
        self.sub: Any = None
        self.ports: Any = None
        if image is not None:
            self.image = SharedImage(image["key"])
            self.sub = self.image.subscribe(lossless=True, start="next")
        if iceoryx is not None:
            self.open_iceoryx(None, iceoryx)

    def open_iceoryx(self, conn: Connection | None, iceoryx: dict[str, Any]) -> None:
        """Subscribe to (a new) iceoryx2 service, from its first sample."""
        self._close_iceoryx()
        self.ports = _StreamPorts(**iceoryx, create=False)
        self.subscriber = self.ports.frames.subscriber_builder().buffer_size(HISTORY).create()
        self.listener = self.ports.event.listener_builder().create()
        self.taken[ICEORYX2] = 0

    def serve(self, conn: Connection, name: str, frames: int) -> tuple[int, int]:
        """Take ``frames`` frames; returns (monotonic ns at the last one, CPU ns spent)."""
        take = self._take_image if name == SHMIMAGE else self._take_iceoryx
        seen = _Seen(self.taken[name] + 1)
        conn.send_bytes(READY)
        cpu = time.process_time_ns()
        take(seen, frames)
        end = time.monotonic_ns()
        self.taken[name] += frames
        return end, time.process_time_ns() - cpu

    def _take_image(self, seen: _Seen, frames: int) -> None:
        sub = self.sub
        for _ in range(frames):
            frame = sub.next(timeout=WAIT_SECONDS)
            seen.check(_index_of(frame.pixels), sub.dropped)
            del frame

    def _take_iceoryx(self, seen: _Seen, frames: int) -> None:
        got, until = 0, 0.0
        while got < frames:
            sample = self.subscriber.receive()
            if sample is None:
                until = self._wait_iceoryx(until)
                continue
            until = 0.0
            pixels = np.frombuffer(self.ports.array_type.from_address(sample.payload_ptr),
                                   np.uint8).reshape(self.shape)
            pixels.flags.writeable = False
            seen.check(_index_of(pixels))
            del pixels
            sample.delete()
            got += 1

    def _wait_iceoryx(self, until: float) -> float:
        """Sleep on the listener until a notification or ``until`` (0: start a
        WAIT_SECONDS wait now); returns the deadline to keep.

        The deadline is our own: ``timed_wait`` also returns early with no
        event (seen under load, after 0 ms), which is not a timeout. Taking it
        for one stopped this subscriber while its port stayed connected: its
        buffer filled, the blocking publisher waited on it for good and the
        other subscribers starved (the "stall" this figure used to show).
        """
        now = time.monotonic()
        if not until:
            until = now + WAIT_SECONDS
        elif now >= until:
            raise TimeoutError(f"no iceoryx2 sample within {WAIT_SECONDS:g} s")
        self.listener.timed_wait(_duration(until - now))
        return until

    def close(self) -> None:
        if self.sub is not None:
            self.sub.close()
            self.image.detach()
            self.sub = None
        self._close_iceoryx()

    def _close_iceoryx(self) -> None:
        if self.ports is not None:
            self.listener = self.subscriber = None
            self.ports.close()
            self.ports = None


def _duration(seconds: float) -> Any:
    import iceoryx2 as iox2

    return iox2.Duration.from_secs_f64(seconds)


# -- the writer's process ----------------------------------------------------------------

class WriterRole:
    """A writer's process (one per system); ``send`` publishes one run's frames."""

    def __init__(self, shape: tuple[int, ...], system: str, place: dict[str, str]) -> None:
        frame = make_frame(shape[0], shape[1])
        self.writer: Any = (ImageStreamWriter(frame) if system == SHMIMAGE
                            else IceoryxStreamWriter(frame, place))

    def reader_args(self, conn: Connection) -> dict[str, Any]:
        args: dict[str, Any] = self.writer.reader_args()
        return args

    def send(self, conn: Connection, frames: int) -> tuple[int, int]:
        """Publish ``frames`` frames; returns (monotonic ns at the start, CPU ns spent)."""
        send = self.writer.send
        cpu = time.process_time_ns()
        start = time.monotonic_ns()
        for _ in range(frames):
            send()
        return start, time.process_time_ns() - cpu

    def close(self) -> None:
        self.writer.close()


# -- the runs --------------------------------------------------------------------------------

@dataclasses.dataclass
class StreamRuns:
    """Per system: wall seconds per frame and CPU seconds per frame, one value per run;
    and the systems that stalled, with the reason (their runs stop there)."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Runs whose writer stalled and was killed (not counted), per system.
    stalls: dict[str, int] = dataclasses.field(default_factory=dict)


class Stalled(RuntimeError):
    """The writer did not finish a run in time: it is killed, the subscribers resynced."""


def _one_run(writer: Reader, readers: list[Reader], name: str,
             frames: int) -> tuple[float, float]:
    for reader in readers:
        reader.conn.send(("call", "serve", (name, frames)))
    for reader in readers:
        if not reader.conn.poll(READY_TIMEOUT) or reader.conn.recv_bytes() != READY:
            raise ReaderError(f"a {name} subscriber did not get ready")
    try:
        start, cpu = writer.request("call", "send", (frames,), timeout=RUN_SECONDS)
    except ReaderError as exc:
        if isinstance(exc, ReaderFailed):
            raise
        writer.process.kill()  # blocked in a native call: nothing else ends it
        said = _resync(readers)
        raise Stalled(f"{name}'s writer had not sent {frames} frames after {RUN_SECONDS:g} s "
                      f"and was killed; its subscribers said: {'; '.join(said)}") from None
    ends = []
    for reader in readers:
        end, spent = reader.reply()
        ends.append(end)
        cpu += spent
    return (max(ends) - start) / frames / 1e9, cpu / frames / 1e9


def _resync(readers: list[Reader]) -> list[str]:
    """Collect each subscriber's answer (its own timeout) so their Pipes are in step;
    the last line of each, deduplicated."""
    said: dict[str, int] = {}
    for reader in readers:
        try:
            reader.reply(timeout=WAIT_SECONDS + READY_TIMEOUT)
            line = "all frames taken"
        except ReaderFailed as exc:
            lines = str(exc).strip().splitlines()
            line = lines[-1] if lines else "failed"
        said[line] = said.get(line, 0) + 1
    return [f"{n}x {line}" for line, n in said.items()]


def stream_runs(spawn: Callable[[], Reader], readers: list[Reader], systems: list[str],
                warmup: int, runs: int, frames: int = FRAMES, size: str = SIZE) -> StreamRuns:
    """``warmup`` uncounted and ``runs`` counted runs of each system, alternating.

    ``spawn`` makes a spare process to play a writer (one per system);
    ``readers`` are the subscribers. An iceoryx2 writer that stalls is killed,
    the run not counted, and a new one started on a new service, up to
    MAX_STALLS times; after that (or for shmimage at once) the system fails.
    """
    shape = make_frame(*parse_size(size)).shape
    got = StreamRuns({n: [] for n in systems}, {n: [] for n in systems})
    writers: dict[str, Reader] = {}
    try:
        args = {name: _start_writer(writers, name, spawn, shape) for name in systems}
        roles = {"shape": shape, "image": args.get(SHMIMAGE), "iceoryx": args.get(ICEORYX2)}
        with playing(readers, f"{__name__}:StreamRoles", roles):
            for i in range(warmup + runs):
                for name in systems[i % len(systems):] + systems[:i % len(systems)]:
                    if name in got.failed:
                        continue
                    try:
                        wall, cpu = _one_run(writers[name], readers, name, frames)
                    except Stalled as exc:
                        _stalled(got, name, str(exc), writers, spawn, shape, readers)
                        continue
                    if i >= warmup:
                        got.wall[name].append(wall)
                        got.cpu[name].append(cpu)
                interrupt.check()
    finally:
        for writer in writers.values():
            _close_writer(writer)
    return got


def _close_writer(writer: Reader) -> None:
    """Tear its role down if it still answers (not after a failure), then end it."""
    try:
        if writer.process.is_alive():
            writer.teardown()
    except ReaderError:  # it died, or its Pipe is out of step: closing ends it anyway
        pass
    writer.close()


def _start_writer(writers: dict[str, Reader], name: str, spawn: Callable[[], Reader],
                  shape: tuple[int, ...]) -> dict[str, Any]:
    """A writer process for ``name``; what its subscribers need to know."""
    run_home = home()  # iceoryx2's files go to the run's own place
    place = {"root": run_home.iceoryx2_root, "prefix": run_home.prefix,
             "name": unique_name("y")}
    writers[name] = writer = spawn()
    writer.setup(f"{__name__}:WriterRole", {"shape": shape, "system": name, "place": place})
    args: dict[str, Any] = writer.request("call", "reader_args", ())
    return args


def _stalled(got: StreamRuns, name: str, reason: str, writers: dict[str, Reader],
             spawn: Callable[[], Reader], shape: tuple[int, ...],
             readers: list[Reader]) -> None:
    """Count the stall; start iceoryx2 afresh, or give the system up."""
    got.stalls[name] = got.stalls.get(name, 0) + 1
    print(f"    {reason}", file=sys.stderr, flush=True)
    writers.pop(name).close()
    if name == SHMIMAGE or got.stalls[name] > MAX_STALLS:
        got.failed[name] = f"{reason} ({got.stalls[name]} stalls)"
        del got.wall[name], got.cpu[name]
        return
    args = _start_writer(writers, name, spawn, shape)
    for reader in readers:
        reader.request("call", "open_iceoryx", (args,))
