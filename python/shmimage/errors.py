"""Typed exceptions and Qt's error codes."""
from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """QSharedMemory::SharedMemoryError, same values.

    Examples
    --------
    >>> import shmimage
    >>> shmimage.ErrorCode.NOT_FOUND == 5, shmimage.NotFoundError.code.name
    (True, 'NOT_FOUND')
    """

    NO_ERROR = 0
    PERMISSION_DENIED = 1
    INVALID_SIZE = 2
    KEY_ERROR = 3
    ALREADY_EXISTS = 4
    NOT_FOUND = 5
    LOCK_ERROR = 6
    OUT_OF_RESOURCES = 7
    UNKNOWN_ERROR = 8


class AccessMode(enum.IntEnum):
    """How a segment is mapped: ``READ_ONLY`` or ``READ_WRITE`` (QSharedMemory::AccessMode).

    Examples
    --------
    >>> import shmimage
    >>> with shmimage.SharedMemory("docs-access-mode") as writer:
    ...     writer.create(4)
    ...     reader = shmimage.SharedMemory("docs-access-mode")
    ...     reader.attach(shmimage.AccessMode.READ_ONLY)
    ...     reader.data.readonly, reader.detach()
    (True, True)
    """

    READ_ONLY = 0
    READ_WRITE = 1


class SharedMemoryError(Exception):
    """Base of every shmimage error; ``code`` is the matching `ErrorCode`.

    Every message names the user's key first and the native (OS) name
    second, e.g. ``no segment 'camera' (/shmi_camera_1f2e...)``.

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedMemory("docs-errors-no-such-key").attach()
    ... except shmimage.SharedMemoryError as exc:
    ...     print(type(exc).__name__, exc.code.name)
    NotFoundError NOT_FOUND
    """

    code: ErrorCode = ErrorCode.UNKNOWN_ERROR


class AlreadyExistsError(SharedMemoryError, FileExistsError):
    """Raised by ``create()`` when a live segment already has the name (also a `FileExistsError`).

    Examples
    --------
    >>> import shmimage
    >>> with shmimage.SharedMemory("docs-already") as a, shmimage.SharedMemory("docs-already") as b:
    ...     a.create(4)
    ...     try:
    ...         b.create(4)
    ...     except FileExistsError as exc:
    ...         print(type(exc).__name__)
    AlreadyExistsError
    """

    code = ErrorCode.ALREADY_EXISTS


class NotFoundError(SharedMemoryError, FileNotFoundError):
    """Raised by ``attach()``, ``remove()`` and readers when no segment has the name (also a `FileNotFoundError`).

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedImage("docs-never-published").read()
    ... except FileNotFoundError as exc:
    ...     print(type(exc).__name__)
    NotFoundError
    """

    code = ErrorCode.NOT_FOUND


class PermissionDeniedError(SharedMemoryError, PermissionError):
    """Raised when the OS refuses access to the segment, e.g. another user's 0600 segment (also a `PermissionError`).

    Examples
    --------
    >>> import shmimage
    >>> issubclass(shmimage.PermissionDeniedError, PermissionError)
    True
    """

    code = ErrorCode.PERMISSION_DENIED


class InvalidSizeError(SharedMemoryError, ValueError):
    """Raised by ``create()`` for a size <= 0 (also a `ValueError`).

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedMemory("docs-size").create(0)
    ... except ValueError as exc:
    ...     print(type(exc).__name__)
    InvalidSizeError
    """

    code = ErrorCode.INVALID_SIZE


class InvalidKeyError(SharedMemoryError, ValueError):
    """Raised when no key is set or the key/native name is not usable (also a `ValueError`).

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedMemory().create(16)
    ... except ValueError as exc:
    ...     print(type(exc).__name__)
    InvalidKeyError
    """

    code = ErrorCode.KEY_ERROR


class LockError(SharedMemoryError):
    """Raised by ``lock()`` on a second lock from the holding thread or in ``READ_ONLY`` mode, and by ``unlock()`` when the calling thread does not hold the lock.

    Examples
    --------
    >>> import shmimage
    >>> with shmimage.SharedMemory("docs-lock-error") as shm:
    ...     shm.create(4)
    ...     try:
    ...         shm.unlock()
    ...     except shmimage.LockError:
    ...         print("not held")
    not held
    """

    code = ErrorCode.LOCK_ERROR


class OutOfResourcesError(SharedMemoryError):
    """Raised when there is no room: the request exceeds /dev/shm, the cgroup memory limit or available memory, checked before anything is reserved.

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedMemory("docs-too-big").create(1 << 50)   # 1 PiB
    ... except shmimage.OutOfResourcesError:
    ...     print("refused before anything was reserved")
    refused before anything was reserved
    """

    code = ErrorCode.OUT_OF_RESOURCES


class IncompatibleSegmentError(SharedMemoryError):
    """Raised by ``attach()`` for a segment that is not shmimage's, of another layout version, half-initialised, or whose header disagrees with its real size.

    Examples
    --------
    >>> import shmimage
    >>> shmimage.IncompatibleSegmentError.code.name
    'UNKNOWN_ERROR'
    """

    code = ErrorCode.UNKNOWN_ERROR


class NotAttachedError(SharedMemoryError):
    """Raised when a member needs an attached segment and there is none, and by ``wait()`` when another thread calls ``detach()``.

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedMemory("docs-detached").data
    ... except shmimage.NotAttachedError:
    ...     print("attach first")
    attach first
    """

    code = ErrorCode.NOT_FOUND


class InvalidImageError(SharedMemoryError, ValueError):
    """Raised for a file or bytes that are not an image (truncated, too large) or an unsupported array; the message never contains the payload (also a `ValueError`).

    Examples
    --------
    >>> import shmimage
    >>> try:
    ...     shmimage.SharedImage("docs-bad-image").publish(b"not an image")
    ... except ValueError as exc:
    ...     print(type(exc).__name__)
    InvalidImageError
    """

    code = ErrorCode.UNKNOWN_ERROR


class NoFrameError(SharedMemoryError):
    """Raised by readers when the segment exists but nothing was published yet (and for a null image from a Qt segment).

    Examples
    --------
    >>> import shmimage
    >>> issubclass(shmimage.NoFrameError, shmimage.SharedMemoryError)
    True
    """

    code = ErrorCode.NOT_FOUND


class TornFrameError(SharedMemoryError):
    """Raised by readers when the writer died mid-publish and no earlier complete frame exists.

    Examples
    --------
    >>> import shmimage
    >>> issubclass(shmimage.TornFrameError, shmimage.SharedMemoryError)
    True
    """

    code = ErrorCode.UNKNOWN_ERROR


class EndOfStream(SharedMemoryError):
    """The writer ended the stream (`SharedImage.end_stream`) and every kept
    frame was returned.

    Examples
    --------
    >>> import numpy as np, shmimage
    >>> with shmimage.SharedImage("docs-end-of-stream") as img:
    ...     _ = img.publish(np.zeros((2, 2), np.uint8))
    ...     sub = img.subscribe(start="latest")
    ...     img.end_stream()
    ...     sub.next(timeout=1.0).info.generation
    ...     try:
    ...         sub.next(timeout=1.0)
    ...     except shmimage.EndOfStream:
    ...         print("ended")
    ...     sub.close()
    1
    ended
    """

    code = ErrorCode.NOT_FOUND
