"""A PySide6 window showing the frames of a key, live.

A QTimer polls `info().generation` 60 times a second (cheap: no copy) and
shows each new frame in a QLabel. With ``--qt`` it reads a Qt program's own
`QSharedMemory` instead (`shmimage.qt.QtSharedImage`, e.g. the Qt "Shared
Memory Example"). Headless: ``QT_QPA_PLATFORM=offscreen``.

    python examples/qt_window.py --key camera
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QApplication, QLabel
from shmimage import NoFrameError, NotFoundError, SharedImage
from shmimage.qt import QtSharedImage


def to_qimage(pixels: np.ndarray) -> QImage:
    """A QImage owning a copy of (H, W), (H, W, 3) or (H, W, 4) uint8 pixels."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    fmt = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888,
           4: QImage.Format.Format_RGBA8888}[channels]
    return QImage(pixels.data, width, height, width * channels, fmt).copy()


class FrameWindow(QLabel):
    """Shows the latest frame of `source`; quits after `limit` frames if given."""

    def __init__(self, key: str, qt: bool, limit: int | None) -> None:
        super().__init__(f"waiting for {key!r}...")
        self.setWindowTitle(f"shmimage: {key}")
        self.key, self.qt, self.limit, self.shown = key, qt, limit, 0
        self.image = SharedImage(key)
        self.seen = 0
        self.timer = QTimer(self, interval=16, timeout=self.poll)
        self.timer.start()

    def poll(self) -> None:
        try:
            if self.qt:
                pixels = QtSharedImage(self.key).read(timeout=1.0)
            else:
                if self.image.info().generation == self.seen:
                    return
                pixels, info = self.image.read_frame()
                self.seen = info.generation
        except (NotFoundError, NoFrameError):
            return  # not there yet
        self.setPixmap(QPixmap.fromImage(to_qimage(pixels)))
        self.shown += 1
        if self.limit is not None and self.shown >= self.limit:
            print(f"shown {self.shown} frames, last {self.pixmap().width()}x"
                  f"{self.pixmap().height()}", flush=True)
            QApplication.quit()

    def closeEvent(self, event: object) -> None:
        self.timer.stop()
        self.image.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--qt", action="store_true", help="read Qt's QSharedMemory format")
    parser.add_argument("--frames", type=int, default=None, help="quit after N frames")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    window = FrameWindow(args.key, args.qt, args.frames)
    window.show()
    app.exec()
    window.close()


if __name__ == "__main__":
    main()
