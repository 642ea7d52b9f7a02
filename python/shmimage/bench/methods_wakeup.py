"""Wake-up latency: two processes ping-ponging, timed per exchange by the writer.

The reader side runs as a pool "call": it says it is ready with ``READY`` on
its Pipe, then answers ``n`` pings. Nothing is polled: every side sleeps in
its method's own blocking wait.
"""
from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np

from .. import SharedImage
from . import interrupt
from .frames import unique_name
from .pool import Reader, ReaderError, playing

READY = b"r"
#: Each sample is one ping -> pong exchange; this many samples per counted run.
EXCHANGES_PER_RUN = 10
WAIT_TIMEOUT = 30.0
_TINY = np.zeros((1, 1, 4), np.uint8)


def ping_pong(reader: Reader, role: str, args: dict[str, Any],
              exchange: Callable[[], None], warmup: int, runs: int) -> list[float]:
    """Seconds of each exchange, ``runs * EXCHANGES_PER_RUN`` of them after warm-up."""
    warmup *= EXCHANGES_PER_RUN
    total = warmup + runs * EXCHANGES_PER_RUN
    with playing([reader], role, args):
        reader.conn.send(("call", "serve_pings", (total,)))
        if not reader.conn.poll(WAIT_TIMEOUT) or reader.conn.recv_bytes() != READY:
            raise ReaderError("the ping-pong reader did not get ready")
        samples = []
        for _ in range(total):
            start = time.perf_counter_ns()
            exchange()
            samples.append(time.perf_counter_ns() - start)
            interrupt.check()
        reader.reply()
    return [t / 1e9 for t in samples[warmup:]]


class ImagePingPong:
    """Writer side: publish on ``ping``, wait for ``pong``."""

    role = f"{__name__}:ImagePonger"

    def __init__(self) -> None:
        self.keys = {"ping": unique_name("w"), "pong": unique_name("w")}
        self.ping = SharedImage(self.keys["ping"])
        self.pong = SharedImage(self.keys["pong"])
        self.ping.publish(_TINY)
        self.pong_seen = self.pong.publish(_TINY)

    def exchange(self) -> None:
        self.ping.publish(_TINY)
        self.pong_seen = self.pong.wait(timeout=WAIT_TIMEOUT, after=self.pong_seen)

    def close(self) -> None:
        self.ping.detach()
        self.pong.detach()


class ImagePonger:
    def __init__(self, keys: dict[str, str]) -> None:
        self.ping = SharedImage(keys["ping"])
        self.pong = SharedImage(keys["pong"])

    def serve_pings(self, conn: Connection, n: int) -> None:
        seen = self.ping.info().generation
        conn.send_bytes(READY)
        for _ in range(n):
            seen = self.ping.wait(timeout=WAIT_TIMEOUT, after=seen)
            self.pong.publish(_TINY)

    def close(self) -> None:
        self.ping.detach()
        self.pong.detach()


class SemaphorePingPong:
    """Two ``posix_ipc`` semaphores, starting at 0."""

    role = f"{__name__}:SemaphorePonger"

    def __init__(self) -> None:
        import posix_ipc

        self.names = {"ping": "/" + unique_name("w"), "pong": "/" + unique_name("w")}
        self.ping = posix_ipc.Semaphore(self.names["ping"], posix_ipc.O_CREX)
        try:
            self.pong = posix_ipc.Semaphore(self.names["pong"], posix_ipc.O_CREX)
        except BaseException:
            self.ping.unlink()
            raise

    def exchange(self) -> None:
        self.ping.release()
        self.pong.acquire(WAIT_TIMEOUT)

    def close(self) -> None:
        for sem in (self.ping, self.pong):
            sem.unlink()
            sem.close()


class SemaphorePonger:
    def __init__(self, names: dict[str, str]) -> None:
        import posix_ipc

        self.ping = posix_ipc.Semaphore(names["ping"])
        self.pong = posix_ipc.Semaphore(names["pong"])

    def serve_pings(self, conn: Connection, n: int) -> None:
        conn.send_bytes(READY)
        for _ in range(n):
            self.ping.acquire(WAIT_TIMEOUT)
            self.pong.release()

    def close(self) -> None:
        self.ping.close()
        self.pong.close()


class PyshmemPingPong:
    """Two ``pyshmem`` streams with futex notification (``notify=True``)."""

    role = f"{__name__}:PyshmemPonger"

    def __init__(self) -> None:
        import pyshmem

        self.names = {"ping": unique_name("y"), "pong": unique_name("y")}
        self.ping = pyshmem.create(self.names["ping"], shape=_TINY.shape, dtype=_TINY.dtype,
                                   notify=True)
        try:
            self.pong = pyshmem.create(self.names["pong"], shape=_TINY.shape,
                                       dtype=_TINY.dtype, notify=True)
        except BaseException:
            self.ping.unlink()
            raise
        self.out = np.empty_like(_TINY)
        self.pong_seen = self.pong.count

    def exchange(self) -> None:
        self.ping.write(_TINY)
        self.pong.read_after(self.pong_seen, timeout=WAIT_TIMEOUT, out=self.out)
        self.pong_seen = self.pong.last_read_count

    def close(self) -> None:
        self.ping.unlink()
        self.pong.unlink()


class PyshmemPonger:
    def __init__(self, names: dict[str, str]) -> None:
        import pyshmem

        self.ping = pyshmem.open(names["ping"], readonly=True)
        self.pong = pyshmem.open(names["pong"])
        self.out = np.empty_like(_TINY)

    def serve_pings(self, conn: Connection, n: int) -> None:
        seen = self.ping.count
        conn.send_bytes(READY)
        for _ in range(n):
            self.ping.read_after(seen, timeout=WAIT_TIMEOUT, out=self.out)
            seen = self.ping.last_read_count
            self.pong.write(_TINY)

    def close(self) -> None:
        self.ping.close()
        self.pong.close()


class PipePingPong:
    """One byte each way over the reader's own ``multiprocessing.Pipe``."""

    role = f"{__name__}:PipePonger"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def exchange(self) -> None:
        self.conn.send_bytes(b"p")
        self.conn.recv_bytes()  # EOFError, not a hang, if the reader died

    def close(self) -> None:
        pass


class PipePonger:
    def serve_pings(self, conn: Connection, n: int) -> None:
        conn.send_bytes(READY)
        for _ in range(n):
            conn.recv_bytes()
            conn.send_bytes(b"p")

    def close(self) -> None:
        pass
