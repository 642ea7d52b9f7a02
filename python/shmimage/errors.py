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
    READ_ONLY = 0
    READ_WRITE = 1


class SharedMemoryError(Exception):
    """Base of every shmimage error; ``code`` is the matching ErrorCode."""

    code: ErrorCode = ErrorCode.UNKNOWN_ERROR


class AlreadyExistsError(SharedMemoryError, FileExistsError):
    code = ErrorCode.ALREADY_EXISTS


class NotFoundError(SharedMemoryError, FileNotFoundError):
    code = ErrorCode.NOT_FOUND


class PermissionDeniedError(SharedMemoryError, PermissionError):
    code = ErrorCode.PERMISSION_DENIED


class InvalidSizeError(SharedMemoryError, ValueError):
    code = ErrorCode.INVALID_SIZE


class InvalidKeyError(SharedMemoryError, ValueError):
    code = ErrorCode.KEY_ERROR


class LockError(SharedMemoryError):
    code = ErrorCode.LOCK_ERROR


class OutOfResourcesError(SharedMemoryError):
    code = ErrorCode.OUT_OF_RESOURCES


class IncompatibleSegmentError(SharedMemoryError):
    code = ErrorCode.UNKNOWN_ERROR


class NotAttachedError(SharedMemoryError):
    code = ErrorCode.NOT_FOUND


class InvalidImageError(SharedMemoryError, ValueError):
    code = ErrorCode.UNKNOWN_ERROR


class NoFrameError(SharedMemoryError):
    code = ErrorCode.NOT_FOUND


class TornFrameError(SharedMemoryError):
    code = ErrorCode.UNKNOWN_ERROR


class EndOfStream(SharedMemoryError):
    """The writer ended the stream (`SharedImage.end_stream`) and every kept
    frame was returned."""

    code = ErrorCode.NOT_FOUND
