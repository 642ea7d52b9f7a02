"""Round-trip baselines: the standard library and the nearest peers.

Each writer copies the frame in, each reader copies it out into a buffer it
allocated once (the peers' fastest way), under the method's own lock if it
has one.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Iterator
from multiprocessing import shared_memory
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

from .frames import unique_name
from .pool import shared_lock
from .roundtrip import Writer

_HERE = __name__


class SignalOnlyWriter(Writer):
    """No frame at all: the Pipe signal and the ack, the floor under every round trip."""

    reader_role = f"{_HERE}:SignalOnlyReader"

    def __init__(self, frame: np.ndarray) -> None:
        pass

    def publish(self) -> None:
        pass


class SignalOnlyReader:
    def step(self, message: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class MpSharedMemoryWriter(Writer):
    """``multiprocessing.shared_memory`` + ``multiprocessing.Lock`` + a Pipe signal."""

    reader_role = f"{_HERE}:MpSharedMemoryReader"

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.lock = shared_lock()
        self.shm = shared_memory.SharedMemory(unique_name("m"), create=True, size=frame.nbytes)
        self.array: Any = np.ndarray(frame.shape, frame.dtype, buffer=self.shm.buf)

    def reader_args(self) -> dict[str, Any]:
        return {"name": self.shm.name, "shape": self.frame.shape}

    def publish(self) -> None:
        with self.lock:
            np.copyto(self.array, self.frame)

    def close(self) -> None:
        self.array = None
        self.shm.close()
        self.shm.unlink()


class MpSharedMemoryReader:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        self.lock = shared_lock()
        self.shm = shared_memory.SharedMemory(name=name)
        self.array: Any = np.ndarray(shape, np.uint8, buffer=self.shm.buf)
        self.out = np.empty(shape, np.uint8)

    def step(self, message: bytes) -> None:
        with self.lock:
            np.copyto(self.out, self.array)

    def close(self) -> None:
        self.array = None
        self.shm.close()


class PickleWriter(Writer):
    """The frame pickled over ``multiprocessing.Pipe`` (what ``Connection.send`` does)."""

    reader_role = f"{_HERE}:PickleReader"

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame

    def publish(self) -> None:
        pass

    def message(self) -> bytes:
        return bytes(ForkingPickler.dumps(self.frame))


class PickleReader:
    def step(self, message: bytes) -> None:
        frame = ForkingPickler.loads(message)
        int(frame.flat[0])

    def close(self) -> None:
        pass


@contextlib.contextmanager
def pyshmem_lock_dir() -> Iterator[None]:
    """pyshmem keeps a lock file per stream name for good: keep the suite's in a temporary
    directory (readers spawned inside the block inherit it) and remove it after."""
    if "PYSHMEM_LOCK_DIR" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory(prefix=f"shmimage-bench-{os.getpid()}-") as folder:
        os.environ["PYSHMEM_LOCK_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PYSHMEM_LOCK_DIR"]


class PyshmemWriter(Writer):
    """``pyshmem``: a latest-frame numpy stream, ``write`` and ``read(out=...)``."""

    reader_role = f"{_HERE}:PyshmemReader"

    def __init__(self, frame: np.ndarray) -> None:
        import pyshmem

        self.frame = frame
        self.name = unique_name("y")
        self.stream = pyshmem.create(self.name, shape=frame.shape, dtype=frame.dtype)

    def reader_args(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.frame.shape}

    def publish(self) -> None:
        self.stream.write(self.frame)

    def close(self) -> None:
        self.stream.unlink()


class PyshmemReader:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        import pyshmem

        self.stream = pyshmem.open(name, readonly=True)
        self.out = np.empty(shape, np.uint8)

    def step(self, message: bytes) -> None:
        self.stream.read(out=self.out)

    def close(self) -> None:
        self.stream.close()


class SharedArrayWriter(Writer):
    """``SharedArray``: a numpy array in ``shm://``, no lock of its own."""

    reader_role = f"{_HERE}:SharedArrayReader"

    def __init__(self, frame: np.ndarray) -> None:
        import SharedArray

        self.frame = frame
        self.name = unique_name("a")
        self.array: Any = SharedArray.create(f"shm://{self.name}", frame.shape, frame.dtype)

    def reader_args(self) -> dict[str, Any]:
        return {"name": self.name}

    def publish(self) -> None:
        np.copyto(self.array, self.frame)

    def close(self) -> None:
        import SharedArray

        self.array = None
        SharedArray.delete(f"shm://{self.name}")


class SharedArrayReader:
    def __init__(self, name: str) -> None:
        import SharedArray

        self.array: Any = SharedArray.attach(f"shm://{name}", ro=True)
        self.out = np.empty_like(self.array)

    def step(self, message: bytes) -> None:
        np.copyto(self.out, self.array)

    def close(self) -> None:
        self.array = None


class PosixIpcWriter(Writer):
    """``posix_ipc``: POSIX shared memory guarded by a POSIX semaphore."""

    reader_role = f"{_HERE}:PosixIpcReader"

    def __init__(self, frame: np.ndarray) -> None:
        import posix_ipc

        self.frame = frame
        self.name = "/" + unique_name("p")
        self.sem = posix_ipc.Semaphore(self.name, posix_ipc.O_CREX, initial_value=1)
        try:
            self.mem = posix_ipc.SharedMemory(self.name, posix_ipc.O_CREX, size=frame.nbytes)
        except BaseException:
            self.sem.unlink()
            raise
        self.map = mmap.mmap(self.mem.fd, frame.nbytes)
        self.mem.close_fd()
        self.array: Any = np.ndarray(frame.shape, frame.dtype, buffer=self.map)

    def reader_args(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.frame.shape}

    def publish(self) -> None:
        self.sem.acquire()
        try:
            np.copyto(self.array, self.frame)
        finally:
            self.sem.release()

    def close(self) -> None:
        self.array = None
        self.map.close()
        self.mem.unlink()
        self.sem.unlink()
        self.sem.close()


class PosixIpcReader:
    def __init__(self, name: str, shape: tuple[int, ...]) -> None:
        import posix_ipc

        self.sem = posix_ipc.Semaphore(name)
        mem = posix_ipc.SharedMemory(name)
        self.map = mmap.mmap(mem.fd, mem.size)
        mem.close_fd()
        self.array: Any = np.ndarray(shape, np.uint8, buffer=self.map)
        self.out = np.empty(shape, np.uint8)

    def step(self, message: bytes) -> None:
        self.sem.acquire()
        try:
            np.copyto(self.out, self.array)
        finally:
            self.sem.release()

    def close(self) -> None:
        self.array = None
        self.map.close()
        self.sem.close()
