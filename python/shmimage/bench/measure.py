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

from . import methods_peers as peers
from . import methods_shmimage as own
from . import methods_wakeup as wake
from .frames import make_frame, parse_size, unique_name
from .methods_qt import QtExampleWriter
from .pool import Reader, ReaderPool, playing
from .roundtrip import Writer, exchange, round_trip, stepping
from .timing import batched, timed_alternating, timed_bracketed

FAN_OUT = 4
LOCK_OPS = 2000

#: Round-trip methods: name -> (writer factory, optional package it needs).
ROUND_TRIPS: dict[str, tuple[Callable[[np.ndarray], Writer], str | None]] = {
    "shmimage read()": (lambda f: own.ImageWriter(f, "read"), None),
    "shmimage view()": (lambda f: own.ImageWriter(f, "view"), None),
    "shmimage loan()+view()": (lambda f: own.ImageWriter(f, "loan"), None),
    "multiprocessing.shared_memory": (peers.MpSharedMemoryWriter, None),
    "pyshmem": (peers.PyshmemWriter, "pyshmem"),
    "SharedArray": (peers.SharedArrayWriter, "SharedArray"),
    "posix_ipc": (peers.PosixIpcWriter, "posix_ipc"),
    "pickle over Pipe": (peers.PickleWriter, None),
    "Qt example (QSharedMemory)": (QtExampleWriter, "PySide6"),
    "Pipe signal + ack only": (peers.SignalOnlyWriter, None),
}
#: Peers that copy in and copy out, as `read()` does ("no slower than the fastest").
COPY_PEERS = ("multiprocessing.shared_memory", "pyshmem", "SharedArray", "posix_ipc")
#: Key prefix of the memcpy timed alongside a figure: ``memcpy@<figure key>``.
MEMCPY = "memcpy@"

Samples = dict[str, list[float]]


@dataclasses.dataclass
class Step:
    key: str
    label: str
    run: Callable[[], Any]
    needs: str | None = None
    #: A one-off probe (memory, not time), taken in the last round only.
    once: bool = False
    #: The keys of the runs it returns (default: its own key).
    keys: tuple[str, ...] = ()

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
    def __init__(self, pool: Callable[[], ReaderPool], warmup: int, runs: int) -> None:
        self.pool, self.warmup, self.runs = pool, warmup, runs
        self.frames = Frames()

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
            Step("wake/shmimage", "wake-up ping-pong: shmimage publish/wait", self.wake_image),
            Step("wake/posix_ipc", "wake-up ping-pong: posix_ipc semaphores",
                 self.wake_semaphore, "posix_ipc"),
            Step("wake/Pipe", "wake-up ping-pong: multiprocessing.Pipe", self.wake_pipe),
            Step("wake/pyshmem", "wake-up ping-pong: pyshmem futex notification",
                 self.wake_pyshmem, "pyshmem"),
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
                              keys=(key, MEMCPY + key)))
        return steps + [
            Step(f"fanout/{size}", f"{size} fan-out to {FAN_OUT} view() readers",
                 lambda: self.fan_out(size), keys=(f"fanout/{size}", f"fanout1/{size}")),
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
