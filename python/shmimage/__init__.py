"""Share images between processes through named shared memory."""
from __future__ import annotations

from .errors import (
    AccessMode,
    AlreadyExistsError,
    EndOfStream,
    ErrorCode,
    IncompatibleSegmentError,
    InvalidImageError,
    InvalidKeyError,
    InvalidSizeError,
    LockError,
    NoFrameError,
    NotAttachedError,
    NotFoundError,
    OutOfResourcesError,
    PermissionDeniedError,
    SharedMemoryError,
    TornFrameError,
)
from .image import Frame, FrameInfo, SharedImage
from .memory import SharedMemory
from .subscription import Subscription

__version__ = "0.1.0"

__all__ = [
    "AccessMode",
    "AlreadyExistsError",
    "EndOfStream",
    "ErrorCode",
    "Frame",
    "FrameInfo",
    "IncompatibleSegmentError",
    "InvalidImageError",
    "InvalidKeyError",
    "InvalidSizeError",
    "LockError",
    "NoFrameError",
    "NotAttachedError",
    "NotFoundError",
    "OutOfResourcesError",
    "PermissionDeniedError",
    "SharedImage",
    "SharedMemory",
    "SharedMemoryError",
    "Subscription",
    "TornFrameError",
]
