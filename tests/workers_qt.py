"""PySide6 workers for the Qt interop tests: each runs in a spawned process and
does what Qt's Shared Memory Example does, with a real QSharedMemory.

`backend` picks the key the way a Qt program does: "sysv" is the example's
`QSharedMemory("key")` (legacy key, System V on Linux), "posix" is
`QSharedMemory(QSharedMemory.platformSafeKey("key"))` (Qt 6.6+ native key).
Results go back through a Queue as ("ok", ...) or ("error", text).
"""
from __future__ import annotations

import os
import time
import traceback
from typing import Any

WAIT = 30.0  # upper bound for every wait: a hung test fails instead of hanging
HOLD = 120.0  # how long a holder lives if nobody kills it


def _app() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication([])


def _memory(key: str, backend: str) -> Any:
    from PySide6.QtCore import QSharedMemory

    if backend == "sysv":
        return QSharedMemory(key)
    return QSharedMemory(QSharedMemory.platformSafeKey(key))


def _rgba(image: Any) -> tuple[int, int, bytes]:
    from PySide6.QtGui import QImage

    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h = rgba.width(), rgba.height()
    rows = bytes(rgba.constBits())
    stride = rgba.bytesPerLine()
    return w, h, b"".join(rows[y * stride: y * stride + w * 4] for y in range(h))


def _stream(image: Any, version: int = 0) -> bytes:
    """`QDataStream << image` through a QBuffer, as the example does."""
    from PySide6.QtCore import QBuffer, QDataStream, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.ReadWrite)
    out = QDataStream(buffer)
    if version:
        out.setVersion(version)
    out << image
    return bytes(buffer.data())


def _load(path: str) -> Any:
    from PySide6.QtGui import QImage

    image = QImage()
    if not image.load(path):
        raise RuntimeError(f"QImage cannot load {path}")
    return image


def _copy_in(memory: Any, data: bytes) -> None:
    """memcpy into the segment; the rest is zeroed."""
    view = memory.data()
    view[: len(data)] = data
    view[len(data): memory.size()] = b"\x00" * (memory.size() - len(data))


def _run(queue: Any, body: Any) -> None:
    try:
        body()
    except BaseException:
        queue.put(("error", traceback.format_exc()))
        raise


def probe(queue: Any) -> None:
    """Can this machine run PySide6's QtGui offscreen?"""
    def body() -> None:
        _app()
        from PySide6 import __version__

        queue.put(("ok", __version__))
    _run(queue, body)


def load_from_file(key: str, backend: str, path: str, queue: Any, done: Any) -> None:
    """The example's first button: load, stream, create, lock, memcpy, unlock,
    stay attached until `done` is set, then detach."""
    def body() -> None:
        _app()
        image = _load(path)
        data = _stream(image)
        memory = _memory(key, backend)
        if not memory.create(len(data)):
            raise RuntimeError(f"create: {memory.errorString()}")
        memory.lock()
        _copy_in(memory, data)
        memory.unlock()
        queue.put(("ok", _rgba(image), memory.nativeKey()))
        done.wait(WAIT)
        memory.detach()
        del memory
    _run(queue, body)


def load_from_memory(key: str, backend: str, queue: Any) -> None:
    """The example's second button: attach, lock, stream out, unlock, detach."""
    def body() -> None:
        _app()
        from PySide6.QtCore import QBuffer, QDataStream, QIODevice
        from PySide6.QtGui import QImage

        memory = _memory(key, backend)
        if not memory.attach():
            queue.put(("error", f"attach: {memory.errorString()}"))
            return
        buffer = QBuffer()
        stream = QDataStream(buffer)
        image = QImage()
        memory.lock()
        buffer.setData(bytes(memory.constData())[: memory.size()])
        buffer.open(QIODevice.OpenModeFlag.ReadOnly)
        stream >> image
        memory.unlock()
        memory.detach()
        del memory
        if image.isNull():
            queue.put(("error", "the streamed QImage is null"))
            return
        queue.put(("ok", _rgba(image)))
    _run(queue, body)


def hold_lock_then_swap(key: str, backend: str, first: str, second: str,
                        queue: Any, swap: Any, done: Any) -> None:
    """Publish `first`, keep the segment locked until `swap` is set, then
    write `second` in its place and unlock."""
    def body() -> None:
        _app()
        data_a, data_b = _stream(_load(first)), _stream(_load(second))
        memory = _memory(key, backend)
        if not memory.create(max(len(data_a), len(data_b))):
            raise RuntimeError(f"create: {memory.errorString()}")
        memory.lock()
        _copy_in(memory, data_a)
        queue.put(("locked", _rgba(_load(second))))
        swap.wait(WAIT)
        _copy_in(memory, data_b)
        memory.unlock()
        queue.put(("swapped",))
        done.wait(WAIT)
        memory.detach()
        del memory
    _run(queue, body)


def create_and_hang(key: str, backend: str, path: str, locked: bool, queue: Any) -> None:
    """Publish `path` (holding the lock if `locked`) and wait to be killed."""
    def body() -> None:
        _app()
        image = _load(path)
        data = _stream(image)
        memory = _memory(key, backend)
        if not memory.create(len(data)):
            raise RuntimeError(f"create: {memory.errorString()}")
        memory.lock()
        _copy_in(memory, data)
        if not locked:
            memory.unlock()
        queue.put(("ok", _rgba(image)))
        time.sleep(HOLD)
    _run(queue, body)


def stream_versions(path: str, versions: list[int], queue: Any) -> None:
    """`QDataStream << QImage` bytes for each stream version, and the pixels."""
    def body() -> None:
        _app()
        image = _load(path)
        streams = {v: _stream(image, v) for v in versions}
        queue.put(("ok", _rgba(image), streams))
    _run(queue, body)


def try_create(key: str, backend: str, queue: Any) -> None:
    """A second Qt program's create() on a key in use: it fails, and Qt's
    QSystemSemaphore (opened in Create mode) removes the semaphore on exit."""
    def body() -> None:
        _app()
        memory = _memory(key, backend)
        created = memory.create(16)
        error = memory.errorString()
        del memory
        queue.put(("ok", created, error))
    _run(queue, body)
