"""Every measurement of the suite. Each returns timed runs (seconds) by key.

A figure and its baseline are timed in one step, so a busy spell of the
machine hits both alike: alternately when both are alike in kind (two round
trips, two segment creations, two locks), and the memcpy baseline in two
halves around a round trip's back-to-back runs otherwise.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
from multiprocessing import shared_memory
from typing import Any, Callable

import numpy as np

from . import across_hosts
from . import methods_iceoryx2 as iox
from . import methods_peers as peers
from . import methods_shmimage as own
from . import methods_streams as streams
from . import methods_wakeup as wake
from . import methods_zmq as zq
from .frames import make_frame, parse_size, unique_name
from .methods_qt import QtExampleWriter
from .optional import READ_OUT
from .pool import Reader, ReaderPool, playing
from .roundtrip import Writer, exchange, round_trip, stepping
from .roundtrip_wake import interleaved
from .timing import batched, timed_alternating, timed_bracketed

FAN_OUT = 4
LOCK_OPS = 2000

Factory = Callable[[np.ndarray], Writer]
IOX_READ, IOX_KEPT = "iceoryx2 receive+copy", "iceoryx2 receive+copy (kept array)"
IOX_VIEW, IOX_LOAN = "iceoryx2 receive+view", "iceoryx2 loan+receive+view"
ZMQ_READ, ZMQ_VIEW = "pyzmq PAIR recv (copy)", "pyzmq PAIR recv (copy=False)"
PING_1X1 = "shmimage 1x1 publish->wait"
OWN_LOAN = "shmimage loan()+view()"


def _own(mode: str) -> Factory:
    return lambda f: own.ImageWriter(f, mode)


def _iox(mode: str) -> Factory:
    return lambda f: iox.IceoryxWriter(f, mode)


def _pair(mode: str) -> Factory:
    return lambda f: zq.PairWriter(f, mode)


#: Methods of both kinds of round trip: name -> (writer factory, what it needs).
_SHARED: dict[str, tuple[Factory, str | None]] = {
    "shmimage read()": (_own("read"), None),
    "shmimage read(out=)": (_own("read-out"), READ_OUT),
    "shmimage view()": (_own("view"), None),
    OWN_LOAN: (_own("loan"), None),
    IOX_READ: (_iox("read"), "iceoryx2"),
    IOX_KEPT: (_iox("read-out"), "iceoryx2"),
    IOX_VIEW: (_iox("view"), "iceoryx2"),
    IOX_LOAN: (_iox("loan"), "iceoryx2"),
    ZMQ_READ: (_pair("read"), "pyzmq"),
    ZMQ_VIEW: (_pair("view"), "pyzmq"),
}
#: Round trips signalled and acked over a Pipe.
ROUND_TRIPS: dict[str, tuple[Factory, str | None]] = _SHARED | {
    "imagezmq PUB-SUB": (lambda f: zq.ImageZmqWriter(f, req_rep=False), "imagezmq"),
    "multiprocessing.shared_memory": (peers.MpSharedMemoryWriter, None),
    "pyshmem": (peers.PyshmemWriter, "pyshmem"),
    "SharedArray": (peers.SharedArrayWriter, "SharedArray"),
    "posix_ipc": (peers.PosixIpcWriter, "posix_ipc"),
    "pickle over Pipe": (peers.PickleWriter, None),
    "Qt example (QSharedMemory)": (QtExampleWriter, "PySide6"),
    "Pipe signal + ack only": (peers.SignalOnlyWriter, None),
}
#: Round trips by each system's own wake-ups (and acks), interleaved run by run.
WAKE_TRIPS: dict[str, tuple[Factory, str | None]] = _SHARED | {
    "imagezmq REQ-REP": (lambda f: zq.ImageZmqWriter(f, req_rep=True), "imagezmq"),
    PING_1X1: (lambda f: own.ImageWriter(own.TINY, "signal"), None),
}
#: Own-wake-up methods that move no frame bytes: a round trip costs tens of
#: microseconds at every size, so a run of a few trips would time mostly the cold
#: caches another method's run left behind. They run ZERO_COPY_TRIPS per run.
ZERO_COPY = (OWN_LOAN, IOX_LOAN, PING_1X1)
ZERO_COPY_TRIPS = 20
#: The methods that copy the frame run trips worth about COPY_BYTES_PER_RUN, within
#: COPY_TRIPS (20 at 640x480, 6 at 1920x1080, 2 at 3840x2160): a big frame's trip
#: is long enough to hide a cold start, and more would lengthen the run.
COPY_BYTES_PER_RUN = 50_000_000
COPY_TRIPS = (2, 20)
#: Peers that copy in and copy out, as `read()` does ("no slower than the fastest").
COPY_PEERS = ("multiprocessing.shared_memory", "pyshmem", "SharedArray", "posix_ipc", IOX_READ)
#: Peers that copy out into an array they keep, as `read(out=)` does.
KEPT_PEERS = ("multiprocessing.shared_memory", "pyshmem", "SharedArray", "posix_ipc", IOX_KEPT)
#: Key prefix of the memcpy timed alongside a figure: ``memcpy@<figure key>``.
MEMCPY = "memcpy@"
#: Key prefixes of the own-wake-up round trips: wall and CPU time per trip.
WAKE = "wake-rt/"
CPU = "cpu@"
#: Key prefix of the stream runs (frame period and CPU per frame): ``streams/<system>``.
STREAMS = "streams/"

Samples = dict[str, list[float]]


def wake_trips(name: str, nbytes: int) -> int:
    """Round trips per run of own-wake-up method ``name`` with frames of ``nbytes``.

    Every method a figure compares gets the same number: the zero-copy ones
    with each other, the copying ones with each other.
    """
    return ZERO_COPY_TRIPS if name in ZERO_COPY else copy_trips(nbytes)


def copy_trips(nbytes: int) -> int:
    """Round trips per run of the own-wake-up methods that copy frames of ``nbytes``."""
    fewest, most = COPY_TRIPS
    return max(fewest, min(most, COPY_BYTES_PER_RUN // max(nbytes, 1)))


@dataclasses.dataclass
class Step:
    key: str
    label: str
    run: Callable[[], Any]
    needs: str | None = None
    #: A one-off probe (memory, not time), taken in the last round only.
    once: bool = False
    #: Streams sustained for a while, sliced into its runs: in the last round only.
    sustained: bool = False
    #: The keys of the runs it returns (default: its own key).
    keys: tuple[str, ...] = ()
    #: A round trip between this process and the first reader: run with both pinned
    #: (``placement``). The other steps run in one process, whose copies may use
    #: both CPUs, or start processes of their own, which would inherit its one CPU.
    placed: bool = False

    def __post_init__(self) -> None:
        self.keys = self.keys or (self.key,)


class Frames:
    """The current test frame and a pre-faulted destination for the memcpy baseline."""

    def __init__(self) -> None:
        self.size = ""
        self.frame = self.dst = np.empty(0, np.uint8)

    def get(self, size: str) -> np.ndarray:
        if size != self.size:
            self.frame = make_frame(*parse_size(size))
            self.dst = np.ones_like(self.frame)
            self.size = size
        return self.frame

    def memcpy(self, size: str) -> Callable[[], None]:
        src = self.get(size)
        dst = self.dst
        return lambda: np.copyto(dst, src)


class Measurements:
    def __init__(self, pool: Callable[[], ReaderPool], warmup: int, runs: int,
                 skipped: dict[str, str] | None = None,
                 fail: Callable[[str, str], None] | None = None,
                 net: across_hosts.Plan | None = None,
                 stalls: dict[str, int] | None = None) -> None:
        self.pool, self.warmup, self.runs = pool, warmup, runs
        self.net_plan = net or across_hosts.Plan.make(quick=False)
        self.frames = Frames()
        #: Optional packages (and features) missing here, by name.
        self.skipped = skipped or {}
        #: Records one method's failure (key, reason) while the others go on.
        self.fail = fail or (lambda key, reason: None)
        self.failed: set[str] = set()
        #: Stream runs dropped because the peer's writer stalled, by stream key.
        self.stalls = {} if stalls is None else stalls

    def readers(self, n: int) -> list[Reader]:
        return self.pool().readers[:n]

    # -- the plan ------------------------------------------------------------
    def plan(self, sizes: list[str]) -> list[Step]:
        steps: list[Step] = []
        for size in sizes:
            steps += self._size_steps(size)
        largest = max(sizes, key=lambda text: int(np.prod(parse_size(text))))
        return steps + [
            Step("lock", "lock()+unlock() beside multiprocessing.Lock", self.lock,
                 keys=("lock/shmimage", "lock/multiprocessing.Lock")),
            Step("wake/shmimage", "wake-up ping-pong: shmimage publish/wait", self.wake_image,
                 placed=True),
            Step("wake/posix_ipc", "wake-up ping-pong: posix_ipc semaphores",
                 self.wake_semaphore, "posix_ipc", placed=True),
            Step("wake/Pipe", "wake-up ping-pong: multiprocessing.Pipe", self.wake_pipe,
                 placed=True),
            Step("wake/pyshmem", "wake-up ping-pong: pyshmem futex notification",
                 self.wake_pyshmem, "pyshmem", placed=True),
            Step("streams", f"streams: {FAN_OUT} lossless subscribers, history "
                 f"{streams.HISTORY}, {streams.SIZE}, loan -> view", self.streams,
                 keys=tuple(f"{prefix}{STREAMS}{name}" for name in streams.SYSTEMS
                            for prefix in ("", CPU))),
            Step("net", f"across hosts: {across_hosts.SIZE} over loopback TCP, sustained",
                 self.across_hosts, "pyzmq", sustained=True,
                 keys=across_hosts.keys(self.net_plan)),
            Step("rss", f"{largest} reader RssAnon holding a view()",
                 lambda: self.rss(largest), "procfs", once=True),
        ]

    def _size_steps(self, size: str) -> list[Step]:
        key = f"publish/{size}"
        steps = [Step(key, f"{size} steady publish", lambda: self.steady(size),
                      keys=(key, MEMCPY + key))]
        for name, (factory, needs) in ROUND_TRIPS.items():
            key = f"rt/{name}/{size}"
            steps.append(Step(key, f"{size} round trip: {name}",
                              self._round_trip_of(name, factory, size), needs,
                              keys=(key, MEMCPY + key), placed=True))
        wake_keys = tuple(f"{prefix}{WAKE}{name}/{size}" for name in WAKE_TRIPS
                          for prefix in ("", CPU))
        return steps + [
            Step(f"{WAKE}{size}", f"{size} round trips by each system's own wake-ups",
                 lambda: self.wake_round_trips(size), keys=wake_keys, placed=True),
            Step(f"fanout/{size}", f"{size} fan-out to {FAN_OUT} view() readers",
                 lambda: self.fan_out(size), keys=(f"fanout/{size}", f"fanout1/{size}"),
                 placed=True),
            Step(f"first/{size}", f"{size} first publish into a new segment",
                 lambda: self.first_publish(size),
                 keys=(f"first/shmimage/{size}", f"first/mp/{size}")),
        ]

    # -- per frame size --------------------------------------------------------
    def steady(self, size: str) -> Samples:
        key = f"publish/{size}"
        publisher = own.SteadyPublisher(self.frames.get(size))
        try:
            runs, memcpy = timed_bracketed(publisher.publish, self.frames.memcpy(size),
                                           self.warmup, self.runs)
            return {key: runs, MEMCPY + key: memcpy}
        finally:
            publisher.close()

    def _round_trip_of(self, name: str, factory: Callable[[np.ndarray], Writer],
                       size: str) -> Callable[[], Samples]:
        key = f"rt/{name}/{size}"

        def run() -> Samples:
            with factory(self.frames.get(size)) as writer:
                got = round_trip(writer, self.readers(1), self.warmup, self.runs,
                                 self.frames.memcpy(size))
            return {key: got["rt"], MEMCPY + key: got["baseline"]}

        return run

    def wake_round_trips(self, size: str) -> Samples:
        """Every method of WAKE_TRIPS that is installed and not failed, interleaved."""
        frame = self.frames.get(size)
        writers: dict[str, Writer] = {}
        try:
            for name, (factory, needs) in WAKE_TRIPS.items():
                if needs not in self.skipped and f"{name}/{size}" not in self.failed:
                    try:
                        writers[name] = factory(frame)
                    except Exception as exc:  # noqa: BLE001 - that method only
                        self._wake_failed(name, size, f"{type(exc).__name__}: {exc}")
            trips = {name: wake_trips(name, frame.nbytes) for name in writers}
            got = interleaved(self.readers(1)[0], writers, self.warmup, self.runs, trips)
        finally:
            for writer in writers.values():
                writer.close()
        for name, reason in got.failed.items():
            self._wake_failed(name, size, reason)
        samples = {f"{WAKE}{name}/{size}": runs for name, runs in got.wall.items()}
        return samples | {f"{CPU}{WAKE}{name}/{size}": runs for name, runs in got.cpu.items()}

    def _wake_failed(self, name: str, size: str, reason: str) -> None:
        self.failed.add(f"{name}/{size}")
        for prefix in ("", CPU):
            self.fail(f"{prefix}{WAKE}{name}/{size}", reason)

    def fan_out(self, size: str) -> Samples:
        """Four viewing readers, alternating with the first of them alone."""
        with own.ImageWriter(self.frames.get(size), "view") as writer:
            readers = self.readers(FAN_OUT)
            with stepping(writer, readers):
                fns = {f"fanout/{size}": exchange(writer, readers),
                       f"fanout1/{size}": exchange(writer, readers[:1])}
                return timed_alternating(fns, self.warmup, self.runs)

    def first_publish(self, size: str) -> Samples:
        """A new shmimage segment + publish, alternating with a new mp segment + copy."""
        frame = self.frames.get(size)
        image = own.FirstPublisher(frame)
        made: list[shared_memory.SharedMemory] = []

        def mp_create_and_copy() -> None:
            made.append(shared_memory.SharedMemory(unique_name("m"), create=True, size=frame.nbytes))
            np.copyto(np.ndarray(frame.shape, frame.dtype, buffer=made[-1].buf), frame)

        def mp_teardown() -> None:
            while made:
                shm = made.pop()
                shm.close()
                shm.unlink()

        try:
            fns = {f"first/shmimage/{size}": image.publish,
                   f"first/mp/{size}": mp_create_and_copy}
            after = {f"first/shmimage/{size}": image.teardown, f"first/mp/{size}": mp_teardown}
            return timed_alternating(fns, self.warmup, self.runs, after)
        finally:
            image.teardown()
            mp_teardown()

    # -- size independent ------------------------------------------------------
    def lock(self) -> Samples:
        pair = own.LockPair()
        mp_lock = multiprocessing.get_context("spawn").Lock()

        def mp_once() -> None:
            mp_lock.acquire()
            mp_lock.release()

        try:
            fns = {"lock/shmimage": batched(pair.once, LOCK_OPS),
                   "lock/multiprocessing.Lock": batched(mp_once, LOCK_OPS)}
            got = timed_alternating(fns, self.warmup, self.runs)
        finally:
            pair.close()
        return {key: [t / LOCK_OPS for t in runs] for key, runs in got.items()}

    def wake_image(self) -> Samples:
        pinger = wake.ImagePingPong()
        try:
            return {"wake/shmimage": wake.ping_pong(
                self.readers(1)[0], pinger.role, {"keys": pinger.keys}, pinger.exchange,
                self.warmup, self.runs)}
        finally:
            pinger.close()

    def wake_semaphore(self) -> Samples:
        pinger = wake.SemaphorePingPong()
        try:
            return {"wake/posix_ipc": wake.ping_pong(
                self.readers(1)[0], pinger.role, {"names": pinger.names}, pinger.exchange,
                self.warmup, self.runs)}
        finally:
            pinger.close()

    def wake_pyshmem(self) -> Samples:
        pinger = wake.PyshmemPingPong()
        try:
            return {"wake/pyshmem": wake.ping_pong(
                self.readers(1)[0], pinger.role, {"names": pinger.names}, pinger.exchange,
                self.warmup, self.runs)}
        finally:
            pinger.close()

    def wake_pipe(self) -> Samples:
        reader = self.readers(1)[0]
        pinger = wake.PipePingPong(reader.conn)
        return {"wake/Pipe": wake.ping_pong(reader, pinger.role, {}, pinger.exchange,
                                            self.warmup, self.runs)}

    def streams(self) -> Samples:
        """Every frame to FAN_OUT lossless subscribers, shmimage and iceoryx2 alternating."""
        ctx = multiprocessing.get_context("spawn")
        names = [name for name in streams.SYSTEMS if name not in self.skipped
                 and STREAMS + name not in self.failed]
        got = streams.stream_runs(lambda: Reader(ctx, self.pool().lock), self.readers(FAN_OUT),
                                  names, self.warmup, self.runs)
        for name in names:
            key = STREAMS + name
            self.stalls[key] = self.stalls.get(key, 0) + got.stalls.get(name, 0)
        for name, reason in got.failed.items():
            self.failed.add(STREAMS + name)
            for prefix in ("", CPU):
                self.fail(f"{prefix}{STREAMS}{name}", reason)
        return ({f"{STREAMS}{name}": runs for name, runs in got.wall.items()}
                | {f"{CPU}{STREAMS}{name}": runs for name, runs in got.cpu.items()})

    def across_hosts(self) -> Samples:
        """Frames per second over loopback TCP: serve -> relay, raw pyzmq, imagezmq."""
        return across_hosts.measure(self.net_plan, self.skipped, self.fail)

    def rss(self, size: str) -> dict[str, int]:
        """In a fresh reader: the pool's readers keep freed frames in their heaps."""
        fresh = Reader(multiprocessing.get_context("spawn"), self.pool().lock)
        try:
            with own.ImageWriter(self.frames.get(size), "view") as writer, \
                    playing([fresh], f"{own.__name__}:RssProbe", {"key": writer.key}):
                probe = fresh.request("call", "probe", ())
        finally:
            fresh.close()
        return {f"rss_{name}": value for name, value in probe.items()}
