"""Exchange images with Qt programs through their own `QSharedMemory` format.

A Qt program shares an image as the bytes of `QDataStream << QImage` in a
`QSharedMemory` segment, guarded by the segment's `QSystemSemaphore`.
`QtSharedImage` reads such segments and publishes them, with the backend Qt
uses for the key: System V for `QSharedMemory("key")` (Qt's legacy keys),
POSIX for `QSharedMemory(QSharedMemory.platformSafeKey("key"))` (Qt 6.6+),
and Windows' named objects on Windows.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from . import _qtipc
from .errors import (
    InvalidImageError,
    InvalidKeyError,
    NoFrameError,
    NotFoundError,
    SharedMemoryError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["BACKENDS", "QtSharedImage", "decode_qimage_stream", "encode_qimage_stream"]

BACKENDS = ("auto", "sysv", "posix", "windows")
DEFAULT_TIMEOUT = 10.0

ImageLike = Union[np.ndarray, Image.Image, str, "os.PathLike[str]"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NULL_MARKER = b"\x00\x00\x00\x00"
_IMAGE_MARKER = b"\x00\x00\x00\x01"
_MACOS_SHM_NAME_MAX = 30


# -- Qt's names --------------------------------------------------------------


def qt_temp_dir() -> str:
    """Qt's QDir::tempPath() on Unix: $TMPDIR, else /tmp (TEMP and TMP are not read)."""
    return os.path.normpath(os.environ.get("TMPDIR") or "/tmp")


def legacy_suffix(key: str) -> str:
    """What Qt's legacy keys append to their prefix: the key's ASCII letters,
    then the SHA-1 of its UTF-8 bytes in hex."""
    letters = "".join(c for c in key if ("a" <= c <= "z") or ("A" <= c <= "Z"))
    return letters + hashlib.sha1(key.encode("utf-8")).hexdigest()


def sysv_names(key: str) -> tuple[str, str]:
    """The ftok key files of QSharedMemory(key) and its semaphore."""
    suffix = legacy_suffix(key)
    tmp = qt_temp_dir()
    return (f"{tmp}/qipc_sharedmemory_{suffix}", f"{tmp}/qipc_systemsem_{suffix}")


def posix_names(key: str) -> tuple[str, str]:
    """QSharedMemory.platformSafeKey(key) on Unix; the semaphore has the same name."""
    if "/" in key:
        raise InvalidKeyError(f"a POSIX Qt key cannot contain '/': {key!r}")
    if sys.platform == "darwin":
        key = key[: _MACOS_SHM_NAME_MAX - 1]
    return ("/" + key, "/" + key)


def windows_names(key: str) -> list[tuple[str, str]]:
    """Qt's Windows names: platformSafeKey(key) first, then the legacy key's."""
    prefix, payload = "", key
    for scope in ("Local\\", "Global\\"):
        if key.startswith(scope):
            prefix, payload = scope, key[len(scope):]
            break
    native = prefix + "shm_" + payload
    suffix = legacy_suffix(key)
    return [(native, native + "_sem"),
            ("qipc_sharedmemory_" + suffix, "qipc_systemsem_" + suffix)]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    on_windows = sys.platform == "win32"
    if (backend == "windows") != on_windows and backend != "auto":
        raise ValueError(f"Qt's {backend!r} backend does not exist on {sys.platform}")


def _segments(key: str, backend: str) -> list[Any]:
    """Unopened segment objects to try, in order, for `backend`."""
    if backend == "sysv":
        return [_qtipc.SysVSegment(*sysv_names(key))]
    if backend == "posix":
        return [_qtipc.PosixSegment(*posix_names(key))]
    if backend == "windows":
        return [_qtipc.WindowsSegment(*names) for names in windows_names(key)]
    if sys.platform == "win32":
        return _segments(key, "windows")
    return _segments(key, "posix") + _segments(key, "sysv")


# -- QDataStream << QImage -----------------------------------------------------


def encode_qimage_stream(pixels: np.ndarray) -> bytes:
    """The bytes `QDataStream << QImage` writes (stream version >= 5).

    Parameters
    ----------
    pixels : numpy.ndarray
        uint8 pixels Pillow can save: (H, W), (H, W, 3) or (H, W, 4).

    Returns
    -------
    bytes
        A big-endian qint32 1, then the image as PNG.

    Raises
    ------
    TypeError
        For arrays Pillow cannot represent.

    Examples
    --------
    >>> import numpy as np
    >>> from shmimage.qt import encode_qimage_stream, decode_qimage_stream
    >>> data = encode_qimage_stream(np.full((2, 2, 4), 9, np.uint8))
    >>> decode_qimage_stream(data).shape
    (2, 2, 4)
    """
    out = io.BytesIO()
    out.write(_IMAGE_MARKER)
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def decode_qimage_stream(data: bytes) -> np.ndarray:
    """Decode `QDataStream << QImage` bytes of any stream version.

    Marker + PNG (>= 5), PNG (2-4) or BMP (1). Trailing bytes (a segment
    is often larger than its image) are ignored.

    Parameters
    ----------
    data : bytes
        The segment's bytes.

    Returns
    -------
    numpy.ndarray
        RGBA uint8 pixels, (H, W, 4).

    Raises
    ------
    NoFrameError
        A null QImage, or no bytes.
    InvalidImageError
        The bytes are not a QImage stream.

    Examples
    --------
    >>> import numpy as np
    >>> from shmimage.qt import decode_qimage_stream, encode_qimage_stream
    >>> decode_qimage_stream(encode_qimage_stream(np.zeros((3, 2), np.uint8))).shape
    (3, 2, 4)
    """
    head = bytes(data[:4])
    if head == _NULL_MARKER or not data:
        raise NoFrameError("the Qt segment holds a null QImage (or nothing yet)")
    payload = data[4:] if head == _IMAGE_MARKER else data
    if not (payload[:8] == _PNG_SIGNATURE or payload[:2] == b"BM"):
        raise InvalidImageError("the Qt segment does not hold a QDataStream << QImage stream")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as img:
                return np.asarray(img.convert("RGBA"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(f"the QImage in the Qt segment does not decode: {exc}") from exc


def _as_pixels(image: ImageLike) -> np.ndarray:
    """`image` as an array Pillow can write as PNG: uint8 gray, RGB or RGBA."""
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(Path(image)) as img:
                return np.asarray(img.convert("RGBA"))
        except FileNotFoundError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise InvalidImageError(f"{os.fspath(image)!r} is not an image: {exc}") from exc
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGBA"))
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"cannot publish a {type(image).__name__} as a QImage")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"a QImage is published from uint8 pixels, not {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InvalidImageError(f"cannot publish an array of shape {image.shape} as a QImage")
    if 0 in image.shape or max(image.shape[:2]) > 32767:
        raise InvalidImageError(f"a QImage cannot be {image.shape[1]}x{image.shape[0]}")
    return np.ascontiguousarray(image)


# -- the facade ------------------------------------------------------------------


class QtSharedImage:
    """An image in a Qt program's `QSharedMemory`, under Qt's key `key`.

    `read()` is the Qt example's "Display Image From Shared Memory" button;
    `publish()` its "Load Image From File..." button (it stays attached until
    `detach()`). `timeout` bounds every wait on Qt's lock (None waits forever):
    POSIX semaphores stay taken when their holder dies.

    Parameters
    ----------
    key : str
        Qt's key, as passed to ``QSharedMemory(key)``.
    backend : {"auto", "posix", "sysv", "windows"}, keyword-only
        Which of Qt's naming schemes; ``"auto"`` reads POSIX then System V
        and publishes with POSIX (Qt 6.6+'s default on Unix).
    timeout : float or None, keyword-only
        Default seconds for waits on Qt's lock.

    Raises
    ------
    TypeError
        `key` is not a str.
    InvalidKeyError
        An empty key or one with a NUL.
    ValueError
        An unknown backend or a negative timeout.

    Examples
    --------
    .. code-block:: python

        from shmimage.qt import QtSharedImage
        with QtSharedImage("QSharedMemoryExample") as qt:
            qt.publish("photo.png")   # the Qt example's "Display" now shows it
    """

    def __init__(self, key: str = "QSharedMemoryExample", *, backend: str = "auto",
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self._published: Any | None = None
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        if not key or "\x00" in key:
            raise InvalidKeyError(f"not a usable Qt key: {key!r}")
        _check_backend(backend)
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        self.key = key
        self.backend = backend
        self.timeout = timeout
        _segments(key, backend)  # bad keys fail here, not at first use

    @property
    def is_attached(self) -> bool:
        """True while a segment made by `publish` is held."""
        return self._published is not None

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    def read_bytes(self, timeout: float | None = None) -> bytes:
        """The raw bytes of the segment, copied under Qt's lock.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait for Qt's lock; None: the object's `timeout`.

        Returns
        -------
        bytes
            The whole segment.

        Raises
        ------
        NotFoundError
            No Qt segment for `key` under the backend(s).
        TimeoutError
            Qt's lock was not acquired in time.

        Examples
        --------
        >>> import numpy as np
        >>> from shmimage.qt import QtSharedImage
        >>> with QtSharedImage("docs-qt-bytes") as qt:
        ...     qt.publish(np.zeros((2, 2, 4), np.uint8))
        ...     QtSharedImage("docs-qt-bytes").read_bytes()[5:8]   # after the 4-byte marker: PNG
        b'PNG'
        """
        for segment in _segments(self.key, self.backend):
            try:
                segment.find()
            except NotFoundError:
                continue
            return _locked_read(segment, self._timeout(timeout))
        raise NotFoundError(
            f"no Qt shared memory segment for key {self.key!r} (backend {self.backend!r})")

    def read(self, timeout: float | None = None) -> np.ndarray:
        """Attach, take Qt's lock, copy, release, detach.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait for Qt's lock; None: the object's `timeout`.

        Returns
        -------
        numpy.ndarray
            RGBA uint8 pixels, (H, W, 4).

        Raises
        ------
        NotFoundError
            No Qt segment for `key`.
        NoFrameError
            The segment holds a null image.
        InvalidImageError
            The segment does not hold a QImage stream.
        TimeoutError
            Qt's lock was not acquired in time.

        Examples
        --------
        >>> import numpy as np
        >>> from shmimage.qt import QtSharedImage
        >>> with QtSharedImage("docs-qt-read") as qt:
        ...     qt.publish(np.full((2, 3, 3), 200, np.uint8))
        ...     QtSharedImage("docs-qt-read").read().shape        # RGBA, as Qt's example shows it
        (2, 3, 4)
        """
        return decode_qimage_stream(self.read_bytes(timeout))

    def to_pil(self, timeout: float | None = None) -> Image.Image:
        """As `read`, as an RGBA `PIL.Image.Image`.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait for Qt's lock; None: the object's `timeout`.

        Returns
        -------
        PIL.Image.Image
            An ``RGBA`` image.

        Raises
        ------
        NotFoundError, NoFrameError, InvalidImageError, TimeoutError
            As for `read`.

        Examples
        --------
        >>> import numpy as np
        >>> from shmimage.qt import QtSharedImage
        >>> with QtSharedImage("docs-qt-to-pil") as qt:
        ...     qt.publish(np.zeros((2, 3, 4), np.uint8))
        ...     QtSharedImage("docs-qt-to-pil").to_pil().size
        (3, 2)
        """
        return Image.fromarray(self.read(timeout))

    def publish(self, image: ImageLike, timeout: float | None = None) -> None:
        """Write `image` as `QDataStream << QImage` would, and stay attached.

        Written under Qt's lock into a Qt segment for `key`. A later, larger
        image makes a new segment; a smaller one reuses this one.

        Parameters
        ----------
        image : numpy.ndarray, PIL.Image.Image, path or bytes
            What `SharedImage.publish` accepts, as 8-bit pixels.
        timeout : float or None
            Seconds to wait for Qt's lock; None: the object's `timeout`.

        Raises
        ------
        InvalidImageError
            `image` is not an image.
        AlreadyExistsError
            Another process already has a Qt segment under `key`.
        TimeoutError
            Qt's lock was not acquired in time.

        Examples
        --------
        >>> import numpy as np
        >>> from shmimage.qt import QtSharedImage
        >>> with QtSharedImage("docs-qt-publish") as qt:    # stays attached until detach()
        ...     qt.publish(np.zeros((4, 4, 4), np.uint8))
        ...     qt.is_attached
        True
        """
        data = encode_qimage_stream(_as_pixels(image))
        segment = self._published
        if segment is not None and segment.size >= len(data):
            _locked_write(segment, data, self._timeout(timeout))
            return
        self.detach()
        self._published = _create(self.key, self.backend, data, self._timeout(timeout))

    def load_from_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The Qt example's first button: decode `path`, publish it, stay attached.

        Parameters
        ----------
        path : str or os.PathLike
            An image file.

        Returns
        -------
        numpy.ndarray
            The published pixels.

        Raises
        ------
        InvalidImageError
            The file is not an image.

        Examples
        --------
        >>> from shmimage.qt import QtSharedImage
        >>> from shmimage.sample import SAMPLE_PATH
        >>> with QtSharedImage("docs-qt-load-file") as qt:
        ...     qt.load_from_file(SAMPLE_PATH).dtype
        dtype('uint8')
        """
        pixels = _as_pixels(path)
        self.publish(pixels)
        return pixels

    def load_from_memory(self) -> np.ndarray:
        """The Qt example's second button: `read` under its name.

        Returns
        -------
        numpy.ndarray
            RGBA uint8 pixels, (H, W, 4).

        Raises
        ------
        NotFoundError, NoFrameError, InvalidImageError, TimeoutError
            As for `read`.

        Examples
        --------
        >>> import numpy as np
        >>> from shmimage.qt import QtSharedImage
        >>> with QtSharedImage("docs-qt-load-memory") as qt:
        ...     qt.publish(np.zeros((2, 2, 4), np.uint8))
        ...     QtSharedImage("docs-qt-load-memory").load_from_memory().shape
        (2, 2, 4)
        """
        return self.read()

    def detach(self, timeout: float | None = None) -> bool:
        """Leave the segment `publish()` made, removing it as Qt's last detach does.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait for Qt's lock before leaving anyway.

        Returns
        -------
        bool
            True when detached now, False when not attached.

        Examples
        --------
        >>> import numpy as np
        >>> from shmimage.qt import QtSharedImage
        >>> qt = QtSharedImage("docs-qt-detach")
        >>> qt.publish(np.zeros((2, 2, 4), np.uint8))
        >>> qt.detach(), qt.detach()
        (True, False)
        """
        segment, self._published = self._published, None
        if segment is None:
            return False
        try:
            segment.lock(self._timeout(timeout))
        except TimeoutError:
            pass  # a stuck lock must not keep the segment alive forever
        try:
            segment.release()
        finally:
            segment.close_lock()
        return True

    @staticmethod
    def remove(key: str = "QSharedMemoryExample", backend: str = "auto") -> bool:
        """Remove a Qt segment left behind under `key`.

        Qt never unlinks POSIX segments; a killed Qt process leaves System V
        ones.

        Parameters
        ----------
        key : str
            Qt's key.
        backend : {"auto", "posix", "sysv", "windows"}
            Which naming scheme(s) to clean.

        Returns
        -------
        bool
            True when a segment was removed.

        Raises
        ------
        AlreadyExistsError
            A System V segment is still in use.
        ValueError
            An unknown backend.

        Examples
        --------
        >>> from shmimage.qt import QtSharedImage
        >>> QtSharedImage.remove("docs-qt-nothing-left")       # nothing under that key
        False
        """
        _check_backend(backend)
        removed = False
        if backend in ("auto", "posix") and sys.platform != "win32":
            removed |= _qtipc.remove_posix(*posix_names(key))
        if backend in ("auto", "sysv") and sys.platform != "win32":
            removed |= _qtipc.remove_sysv(*sysv_names(key))
        return removed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __del__(self) -> None:
        with contextlib.suppress(SharedMemoryError, OSError):
            self.detach(timeout=1.0)

    def __repr__(self) -> str:
        state = "attached" if self.is_attached else "detached"
        return f"QtSharedImage({self.key!r}, backend={self.backend!r}) <{state}>"


def _locked_read(segment: Any, timeout: float | None) -> bytes:
    """Qt's loadFromMemory(): lock, map, copy, unmap, unlock."""
    segment.open_lock(create=False)
    try:
        segment.lock(timeout)
        try:
            segment.map(readonly=True)
            data: bytes = segment.read()
            return data
        finally:
            segment.release()
            segment.unlock()
    finally:
        segment.release()
        segment.close_lock()


def _locked_write(segment: Any, data: bytes, timeout: float | None) -> None:
    segment.lock(timeout)
    try:
        segment.write(data)
    finally:
        segment.unlock()


def _create(key: str, backend: str, data: bytes, timeout: float | None) -> Any:
    """Qt's create() + memcpy under one hold of the lock, so no reader ever
    sees the segment empty."""
    publish_backend = backend
    if backend == "auto":
        publish_backend = "windows" if sys.platform == "win32" else "posix"
    segment = _segments(key, publish_backend)[0]
    segment.open_lock(create=True)
    try:
        _create_locked(segment, data, timeout)
    except BaseException:
        segment.release()
        segment.close_lock()
        raise
    return segment


def _create_locked(segment: Any, data: bytes, timeout: float | None) -> None:
    segment.lock(timeout)
    try:
        segment.create(len(data))
        segment.write(data)
    finally:
        segment.unlock()
