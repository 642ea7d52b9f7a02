"""`SharedMemory`: QSharedMemory's API over the compiled core, done right."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import sys
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _shmcore
from .errors import (
    AccessMode,
    ErrorCode,
    InvalidKeyError,
    InvalidSizeError,
    LockError,
    NotAttachedError,
    OutOfResourcesError,
    SharedMemoryError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

_PREFIX = "shmi_"
_MAX_SIZE = (1 << 63) - (1 << 20)
_SHM_DIR = "/dev/shm"


def native_key_for(key: str) -> str:
    """The OS name for a user key: deterministic, at most 30 characters."""
    try:
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"key {key!r} cannot be encoded as UTF-8") from exc
    if sys.platform == "win32":
        return f"Local\\shmimage_{digest}"
    readable = re.sub(r"[^A-Za-z0-9]", "", key)[:8]
    return f"/{_PREFIX}{readable}_{digest[:15]}"


def header_key(key: str) -> bytes:
    """The key as stored in a segment's header for `ls`: cut short on a
    character boundary, never mid-character."""
    data = key.encode("utf-8")[: _shmcore.KEY_MAX]
    return data.decode("utf-8", "ignore").encode("utf-8")


def _check_key(key: object, what: str) -> None:
    if key is not None and not isinstance(key, str):
        raise TypeError(f"{what} must be a str or None, not {type(key).__name__}")


def _check_native_key(name: str) -> None:
    if sys.platform == "win32":
        ok = 0 < len(name) <= 64 and "\0" not in name
    else:
        ok = (
            2 <= len(name) <= 64
            and name[0] == "/"
            and "/" not in name[1:]
            and "\0" not in name
            and name not in ("/.", "/..")
        )
    if not ok:
        raise InvalidKeyError(f"invalid native key {name!r}")


class SharedMemory:
    """A named shared memory segment, with QSharedMemory's API."""

    def __init__(self, key: str | None = None, *, native_key: str | None = None) -> None:
        _check_key(key, "key")
        _check_key(native_key, "native_key")
        self._seg: _shmcore.Segment | None = None
        self._error = ErrorCode.NO_ERROR
        self._error_string = ""
        self._key: str | None = None
        self._native_key: str | None = None
        if native_key is not None:
            self.set_native_key(native_key)
        else:
            self.set_key(key)

    # -- keys --

    @property
    def key(self) -> str | None:
        return self._key

    @property
    def native_key(self) -> str | None:
        return self._native_key

    def set_key(self, key: str | None) -> None:
        """Change the key; detaches first, as QSharedMemory does."""
        _check_key(key, "key")
        self.detach()
        self._key = key
        self._native_key = native_key_for(key) if key else None

    def set_native_key(self, native_key: str) -> None:
        _check_key(native_key, "native_key")
        self.detach()
        self._key = None
        self._native_key = native_key

    def _name(self) -> str:
        if not self._native_key:
            raise InvalidKeyError("no key is set")
        _check_native_key(self._native_key)
        return self._native_key

    # -- error state, for Qt-style callers --

    @property
    def error(self) -> ErrorCode:
        return self._error

    @property
    def error_string(self) -> str:
        return self._error_string

    def _failed(self, exc: SharedMemoryError) -> None:
        self._error = exc.code
        self._error_string = str(exc)

    def _ok(self) -> None:
        self._error = ErrorCode.NO_ERROR
        self._error_string = ""

    # -- lifetime --

    def create(
        self, size: int, mode: AccessMode = AccessMode.READ_WRITE, *, persistent: bool = False
    ) -> None:
        """Create the segment exclusively and attach to it."""
        try:
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError(f"size must be an int, not {type(size).__name__}")
            if size <= 0:
                raise InvalidSizeError(f"size must be > 0, not {size}")
            if size > _MAX_SIZE:
                raise OutOfResourcesError(f"no machine has room for {size} bytes")
            mode = AccessMode(mode)
            if self._seg is not None:
                raise SharedMemoryError("already attached")
            name = self._name()
            key = header_key(self._key or name)
            seg = _shmcore.Segment.build(size, key, persistent)
            seg.link(name)
        except SharedMemoryError as exc:
            self._failed(exc)
            raise
        if mode == AccessMode.READ_ONLY:
            seg = self._reopen_read_only(seg, name)
        self._adopt(seg)

    @staticmethod
    def _reopen_read_only(seg: _shmcore.Segment, name: str) -> _shmcore.Segment:
        ro = _shmcore.Segment.attach(name, False)
        seg.detach()
        return ro

    def attach(self, mode: AccessMode = AccessMode.READ_WRITE) -> None:
        """Attach to an existing segment."""
        try:
            if self._seg is not None:
                raise SharedMemoryError("already attached")
            seg = _shmcore.Segment.attach(self._name(), AccessMode(mode) == AccessMode.READ_WRITE)
        except SharedMemoryError as exc:
            self._failed(exc)
            raise
        self._adopt(seg)

    def _adopt(self, seg: _shmcore.Segment) -> None:
        self._seg = seg
        self._ok()
        # The lock is the hot path: while attached, lock/unlock are the
        # compiled segment's own methods, with no Python frame in between.
        seg.on_error = weakref.WeakMethod(self._failed)
        self.lock = seg.lock  # type: ignore[method-assign]
        self.unlock = seg.unlock  # type: ignore[method-assign]

    def detach(self) -> bool:
        """False when not attached; BufferError while views of `data` live."""
        seg = self._seg
        if seg is None:
            return False
        if not seg.detach():
            return False  # another thread detached it meanwhile
        seg.on_error = None
        self._seg = None
        self.__dict__.pop("lock", None)
        self.__dict__.pop("unlock", None)
        return True

    @staticmethod
    def remove(key: str) -> None:
        """Remove a segment's name; attached processes keep their mapping."""
        _check_key(key, "key")
        if not key:
            raise InvalidKeyError("no key given")
        _shmcore.remove(native_key_for(key))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- state --

    @property
    def is_attached(self) -> bool:
        return self._seg is not None

    def isAttached(self) -> bool:
        return self.is_attached

    @property
    def size(self) -> int:
        return self._seg.size if self._seg is not None else 0

    @property
    def data(self) -> memoryview:
        return memoryview(self._attached())

    @property
    def persistent(self) -> bool:
        return self._attached().persistent

    def _attached(self) -> _shmcore.Segment:
        if self._seg is None:
            exc = NotAttachedError("not attached")
            self._failed(exc)
            raise exc
        return self._seg

    # -- the lock --

    def lock(self, timeout: float | None = None) -> bool:
        """Take the segment's process-shared mutex; False on timeout.

        (While attached, the instance's own `lock` is the segment's.)
        """
        exc = LockError("not attached")
        self._failed(exc)
        raise exc

    def unlock(self) -> None:
        """Release the mutex; LockError when this thread does not hold it."""
        exc = LockError("not attached")
        self._failed(exc)
        raise exc

    @property
    def owner_died(self) -> bool:
        """True when the last lock() recovered it from a holder that died."""
        return bool(self._seg is not None and self._seg.owner_died)

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[SharedMemory]:
        if not self.lock(timeout):
            raise TimeoutError(f"could not lock {self._native_key!r} within {timeout} s")
        try:
            yield self
        finally:
            self.unlock()

    def __repr__(self) -> str:
        state = f"attached, {self.size} bytes" if self.is_attached else "detached"
        return f"<SharedMemory key={self._key!r} native_key={self._native_key!r} {state}>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its key (or native key); the copy starts detached."""
        return (_unpickle_memory, (self._key, self._native_key))


def _unpickle_memory(key: str | None, native_key: str | None) -> SharedMemory:
    if key is None and native_key is not None:
        return SharedMemory(native_key=native_key)
    return SharedMemory(key)


# -- segments on this machine: `shmimage ls` and `shmimage gc` --


@dataclasses.dataclass(frozen=True)
class SegmentInfo:
    key: str
    native_key: str
    size: int
    attachments: int
    persistent: bool


def _flock_holders() -> dict[tuple[int, int], int]:
    """(dev, inode) -> number of flock holders, from /proc/locks."""
    counts: dict[tuple[int, int], int] = {}
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return counts
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0].endswith("->"):
            continue
        try:
            major, minor, ino = parts[5].split(":")
            dev = os.makedev(int(major, 16), int(minor, 16))
            key = (dev, int(ino))
        except ValueError:
            continue
        counts[key] = counts.get(key, 0) + 1
    return counts


def _names(temporary: bool = False) -> list[str]:
    """Names in the shm directory; `temporary` adds the names a grower that
    died between link() and rename() can leave behind."""
    try:
        entries = os.listdir(_SHM_DIR)
    except OSError:
        return []
    return sorted(
        n for n in entries if not n.startswith(".") or (temporary and n.startswith(".shmimage-"))
    )


def list_segments() -> list[SegmentInfo]:
    """shmimage's segments on this machine; stale ones are reclaimed on the way."""
    holders = _flock_holders()
    found = []
    for entry in _names():
        try:
            facts = _shmcore.probe("/" + entry, True)
        except (SharedMemoryError, OSError):
            continue
        if not facts["ours"] or facts["reclaimed"]:
            continue
        found.append(
            SegmentInfo(
                key=facts["key"],
                native_key="/" + entry,
                size=facts["size"],
                attachments=holders.get((facts["dev"], facts["ino"]), 0),
                persistent=facts["persistent"],
            )
        )
    return found


def collect_garbage() -> list[str]:
    """Remove every stale shmimage segment; their native names."""
    removed = []
    for entry in _names(temporary=True):
        try:
            if _shmcore.probe("/" + entry, True)["reclaimed"]:
                removed.append("/" + entry)
        except (SharedMemoryError, OSError):
            continue
    return removed


__all__ = ["SegmentInfo", "SharedMemory", "collect_garbage", "list_segments", "native_key_for"]
