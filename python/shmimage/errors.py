"""Typed exceptions and Qt's error codes."""
from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """QSharedMemory::SharedMemoryError, same values."""

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
    """How a segment is mapped: ``READ_ONLY`` or ``READ_WRITE`` (QSharedMemory::AccessMode)."""

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
    """Raised by ``create()`` when a live segment already has the name (also a `FileExistsError`)."""

    code = ErrorCode.ALREADY_EXISTS


class NotFoundError(SharedMemoryError, FileNotFoundError):
    """Raised by ``attach()``, ``remove()`` and readers when no segment has the name (also a `FileNotFoundError`)."""

    code = ErrorCode.NOT_FOUND


class PermissionDeniedError(SharedMemoryError, PermissionError):
    """Raised when the OS refuses access to the segment, e.g. another user's 0600 segment (also a `PermissionError`)."""

    code = ErrorCode.PERMISSION_DENIED


class InvalidSizeError(SharedMemoryError, ValueError):
    """Raised by ``create()`` for a size <= 0 (also a `ValueError`)."""

    code = ErrorCode.INVALID_SIZE


class InvalidKeyError(SharedMemoryError, ValueError):
    """Raised when no key is set or the key/native name is not usable (also a `ValueError`)."""

    code = ErrorCode.KEY_ERROR


class LockError(SharedMemoryError):
    """Raised by ``lock()`` on a second lock from the holding thread or in ``READ_ONLY`` mode, and by ``unlock()`` when the calling thread does not hold the lock."""

    code = ErrorCode.LOCK_ERROR


class OutOfResourcesError(SharedMemoryError):
    """Raised when there is no room: the request exceeds /dev/shm, the cgroup memory limit or available memory, checked before anything is reserved."""

    code = ErrorCode.OUT_OF_RESOURCES


class IncompatibleSegmentError(SharedMemoryError):
    """Raised by ``attach()`` for a segment that is not shmimage's, of another layout version, half-initialised, or whose header disagrees with its real size."""

    code = ErrorCode.UNKNOWN_ERROR


class NotAttachedError(SharedMemoryError):
    """Raised when a member needs an attached segment and there is none, and by ``wait()`` when another thread calls ``detach()``."""

    code = ErrorCode.NOT_FOUND


class InvalidImageError(SharedMemoryError, ValueError):
    """Raised for a file or bytes that are not an image (truncated, too large) or an unsupported array; the message never contains the payload (also a `ValueError`)."""

    code = ErrorCode.UNKNOWN_ERROR


class NoFrameError(SharedMemoryError):
    """Raised by readers when the segment exists but nothing was published yet (and for a null image from a Qt segment)."""

    code = ErrorCode.NOT_FOUND


class TornFrameError(SharedMemoryError):
    """Raised by readers when the writer died mid-publish and no earlier complete frame exists."""

    code = ErrorCode.UNKNOWN_ERROR


class EndOfStream(SharedMemoryError):
    """The writer ended the stream (`SharedImage.end_stream`) and every kept
    frame was returned."""

    code = ErrorCode.NOT_FOUND
