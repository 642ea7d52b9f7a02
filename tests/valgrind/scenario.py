"""A multi-process shmimage scenario to run under valgrind memcheck.

The writer publishes and grows frames; a forked reader waits, reads and views
them; a forked locker dies holding the lock and the writer recovers it. Exit
status 0 when every check held. Run with PYTHONMALLOC=malloc.
"""
from __future__ import annotations

import os
import signal
import sys

import numpy as np
from shmimage import SharedImage, SharedMemory

WAIT = 120.0  # valgrind is slow
LAST = 6


def frame(value: int, shape: tuple = (96, 128, 4)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def reader(key: str) -> int:
    image = SharedImage(key)
    seen = 0
    while seen < LAST:
        seen = image.wait(timeout=WAIT, after=seen)
        pixels = image.read()
        with image.view() as view:
            same = bool(np.all(view == view.flat[0]))
        if not same or not np.all(pixels == pixels.flat[0]):
            return 2
    image.detach()
    return 0


def locker(key: str) -> None:
    memory = SharedMemory(key)
    memory.attach()
    memory.lock()
    os.kill(os.getpid(), signal.SIGKILL)


def fork(body, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = body(*args) or 0
        finally:
            os._exit(code)
    return pid


def status_of(pid: int) -> int:
    return os.waitpid(pid, 0)[1]


def main() -> int:
    key = f"valgrind-{os.getpid()}"
    writer = SharedImage(key, capacity=96 * 128 * 4)
    writer.publish(frame(1))
    read_pid = fork(reader, key)
    for value in range(2, LAST + 1):
        shape = (96, 128, 4) if value < LAST else (200, 300, 4)  # the last one grows
        writer.publish(frame(value, shape), timeout=WAIT)
    if status_of(read_pid) != 0:
        return 10
    if status_of(fork(locker, key)) != signal.SIGKILL:
        return 11
    memory = SharedMemory(key)
    memory.attach()
    if not memory.lock(timeout=WAIT) or not memory.owner_died:
        return 12
    memory.unlock()
    memory.detach()
    with writer.loan((10, 10)) as buf:
        buf.fill(7)
    del buf  # the mapping lives while arrays over it do
    if not np.all(writer.read() == 7):
        return 13
    native = writer.native_key
    writer.detach()
    return 14 if os.path.exists("/dev/shm" + native) else 0


if __name__ == "__main__":
    sys.exit(main())
