"""The Qt "Shared Memory Example"'s own method, through PySide6.

Writer (the example's ``loadFromFile`` after decoding): detach, stream the
``QImage`` into a ``QBuffer`` with ``QDataStream``, create a segment of that
size, copy the bytes in under its lock. Reader (``loadFromMemory``): attach,
lock, stream the ``QImage`` back out, unlock, detach.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .frames import unique_name
from .roundtrip import Writer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class QtExampleWriter(Writer):
    reader_role = f"{__name__}:QtExampleReader"

    def __init__(self, frame: np.ndarray) -> None:
        from PySide6.QtCore import QSharedMemory
        from PySide6.QtGui import QImage

        height, width = frame.shape[:2]
        self.pixels = np.ascontiguousarray(frame)
        self.image = QImage(self.pixels.data, width, height, width * 4, QImage.Format.Format_RGBA8888)
        self.key = unique_name("q")
        self.memory = QSharedMemory(self.key)

    def reader_args(self) -> dict[str, Any]:
        return {"key": self.key}

    def publish(self) -> None:
        from PySide6.QtCore import QBuffer, QDataStream, QIODevice

        if self.memory.isAttached():
            self.memory.detach()
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.ReadWrite)
        stream = QDataStream(buffer)
        stream << self.image
        size = int(buffer.size())
        if not self.memory.create(size):
            raise RuntimeError(f"QSharedMemory.create: {self.memory.errorString()}")
        self.memory.lock()
        try:
            target: Any = self.memory.data()  # a memoryview (typed as a pointer)
            memoryview(target)[:size] = buffer.data().data()
        finally:
            self.memory.unlock()

    def close(self) -> None:
        if self.memory.isAttached():
            self.memory.detach()


class QtExampleReader:
    def __init__(self, key: str) -> None:
        from PySide6.QtCore import QSharedMemory

        self.memory = QSharedMemory(key)

    def step(self, message: bytes) -> None:
        from PySide6.QtCore import QBuffer, QByteArray, QDataStream, QIODevice
        from PySide6.QtGui import QImage

        if not self.memory.attach():
            raise RuntimeError(f"QSharedMemory.attach: {self.memory.errorString()}")
        image = QImage()
        self.memory.lock()
        try:
            buffer = QBuffer()
            source: Any = self.memory.constData()  # a memoryview (typed as a pointer)
            buffer.setData(QByteArray(bytes(source[: self.memory.size()])))
            buffer.open(QIODevice.OpenModeFlag.ReadOnly)
            stream = QDataStream(buffer)
            stream >> image
        finally:
            self.memory.unlock()
            self.memory.detach()
        if image.isNull():
            raise RuntimeError("the Qt reader decoded a null image")
        image.pixel(0, 0)

    def close(self) -> None:
        if self.memory.isAttached():
            self.memory.detach()
