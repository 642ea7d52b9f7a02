"""`SharedMemory`: QSharedMemory's API over the compiled core, done right."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _shmcore
from .errors import (
    AccessMode,
    ErrorCode,
    InvalidKeyError,
    InvalidSizeError,
    NotAttachedError,
    OutOfResourcesError,
    SharedMemoryError,
)

if TYPE_CHECKING:
    from typing_extensions import Self

_MAX_SIZE = (1 << 63) - (1 << 20)


def native_key_for(key: str) -> str:
    """The OS name for a user key: deterministic, at most 30 characters."""
    return _shmcore.native_name(key)


def header_key(key: str) -> bytes:
    """The key as stored in a segment's header for `ls`: cut short on a
    character boundary, never mid-character."""
    data = key.encode("utf-8")[: _shmcore.KEY_MAX]
    return data.decode("utf-8", "ignore").encode("utf-8")


def _check_key(key: object, what: str) -> None:
    if key is not None and not isinstance(key, str):
        raise TypeError(f"{what} must be a str or None, not {type(key).__name__}")


class SharedMemory(_shmcore.SegmentHolder):
    """A named shared memory segment, with QSharedMemory's API.

    `lock` and `unlock` are the compiled base class's: no Python frame
    between the caller and the mutex.

    Parameters
    ----------
    key : str or None
        The user key; the OS name (`native_key`) is derived from it,
        deterministically across processes and versions.
    native_key : str or None, keyword-only
        A raw OS name used as is, instead of `key`.

    Raises
    ------
    TypeError
        When a key is not a str or None.

    Notes
    -----
    The segment lives while a process is attached; when the last one
    detaches (or dies) it is removed, unless created ``persistent=True``.

    Examples
    --------
    >>> import shmimage
    >>> with shmimage.SharedMemory("docs-memory-class") as shm:
    ...     shm.create(16)
    ...     with shm.locked(timeout=1.0):
    ...         shm.data[:5] = b"hello"
    ...     bytes(shm.data[:5])
    b'hello'
    """

    # No instance dict: the method lookup of lock() stays the shortest.
    __slots__ = ()

    def __init__(self, key: str | None = None, *, native_key: str | None = None) -> None:
        _check_key(key, "key")
        _check_key(native_key, "native_key")
        self._seg: _shmcore.Segment | None = None
        self._key: str | None = None
        self._native_key: str | None = None
        if native_key is not None:
            self.set_native_key(native_key)
        else:
            self.set_key(key)

    # -- keys --

    @property
    def key(self) -> str | None:
        """The user key, or None when only a native key is set."""
        return self._key

    @property
    def native_key(self) -> str | None:
        """The OS name: ``/...`` (at most 30 characters) on POSIX, ``Local\\...`` on Windows."""
        return self._native_key

    def set_key(self, key: str | None) -> None:
        """Change the key; detaches first, as QSharedMemory does.

        Parameters
        ----------
        key : str or None
            The new user key; None clears it.

        Raises
        ------
        TypeError
            When `key` is not a str or None.

        Examples
        --------
        >>> import shmimage
        >>> shm = shmimage.SharedMemory()
        >>> shm.set_key("docs-set-key")
        >>> shm.key, shm.native_key.startswith("/")
        ('docs-set-key', True)
        """
        _check_key(key, "key")
        self.detach()
        self._key = key
        self._native_key = native_key_for(key) if key else None

    def set_native_key(self, native_key: str) -> None:
        """Use a raw OS name as is; detaches first and clears `key`.

        Parameters
        ----------
        native_key : str
            The OS name, e.g. ``/myseg`` on POSIX.

        Raises
        ------
        TypeError
            When `native_key` is not a str.

        Examples
        --------
        >>> import shmimage
        >>> shm = shmimage.SharedMemory()
        >>> shm.set_native_key("/docs-native")
        >>> shm.key is None, shm.native_key
        (True, '/docs-native')
        """
        _check_key(native_key, "native_key")
        self.detach()
        self._key = None
        self._native_key = native_key

    def _name(self) -> str:
        if not self._native_key:
            raise InvalidKeyError("no key is set")
        _shmcore.check_name(self._native_key)
        return self._native_key

    # -- error state, for Qt-style callers --

    @property
    def error(self) -> ErrorCode:
        """The last error as an `ErrorCode` (``NO_ERROR`` after a success), for Qt-style callers."""
        exc = self._errors.last
        return ErrorCode.NO_ERROR if exc is None else exc.code

    @property
    def error_string(self) -> str:
        """The last error's message, or an empty string."""
        exc = self._errors.last
        return "" if exc is None else str(exc)

    def _failed(self, exc: SharedMemoryError) -> None:
        self._errors.last = exc

    # -- lifetime --

    def create(
        self, size: int, mode: AccessMode = AccessMode.READ_WRITE, *, persistent: bool = False
    ) -> None:
        """Create the segment exclusively and attach to it.

        The memory is reserved at creation, so a full ``/dev/shm`` is an
        exception here, never a SIGBUS later. A stale segment (every
        process that had it is gone) under the name is reclaimed.

        Parameters
        ----------
        size : int
            Usable bytes, > 0.
        mode : AccessMode, optional
            ``READ_WRITE`` (default) or ``READ_ONLY`` for the mapping.
        persistent : bool, keyword-only
            Outlive the creator until `remove` or ``shmimage rm``.

        Raises
        ------
        AlreadyExistsError
            A live segment has the name.
        InvalidSizeError
            `size` <= 0.
        InvalidKeyError
            No or bad key.
        PermissionDeniedError
            The OS refuses.
        OutOfResourcesError
            No room for `size` bytes (checked before reserving).
        SharedMemoryError
            This object is already attached.
        TypeError
            `size` is not an int.

        Examples
        --------
        >>> import shmimage
        >>> with shmimage.SharedMemory("docs-create") as shm:
        ...     shm.create(1024)
        ...     shm.size, shm.is_attached
        (1024, True)
        """
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
            seg = _shmcore.Segment.build(size, key, persistent, None, name)
            seg.link(name)
        except SharedMemoryError as exc:
            self._failed(exc)
            raise
        if mode == AccessMode.READ_ONLY:
            seg = self._reopen_read_only(seg, name)
        self._adopt(seg)

    def _reopen_read_only(self, seg: _shmcore.Segment, name: str) -> _shmcore.Segment:
        ro = _shmcore.Segment.attach(name, False, self._key)
        seg.detach()
        return ro

    def attach(self, mode: AccessMode = AccessMode.READ_WRITE) -> None:
        """Attach to an existing segment.

        Parameters
        ----------
        mode : AccessMode, optional
            ``READ_WRITE`` (default) or ``READ_ONLY``; a read-only mapping
            makes `data` read-only and `lock` raise `LockError`.

        Raises
        ------
        NotFoundError
            No segment has the name.
        IncompatibleSegmentError
            The segment is not shmimage's, of another layout version,
            half-initialised, or its header disagrees with its size.
        PermissionDeniedError
            The OS refuses.
        InvalidKeyError
            No or bad key.
        SharedMemoryError
            This object is already attached.

        Examples
        --------
        >>> import shmimage
        >>> with shmimage.SharedMemory("docs-attach") as owner:
        ...     owner.create(4)
        ...     owner.data[:2] = b"hi"
        ...     with shmimage.SharedMemory("docs-attach") as other:
        ...         other.attach()
        ...         bytes(other.data[:2])
        b'hi'
        """
        try:
            if self._seg is not None:
                raise SharedMemoryError("already attached")
            writable = AccessMode(mode) == AccessMode.READ_WRITE
            seg = _shmcore.Segment.attach(self._name(), writable, self._key)
        except SharedMemoryError as exc:
            self._failed(exc)
            raise
        self._adopt(seg)

    def _adopt(self, seg: _shmcore.Segment) -> None:
        self._seg = seg
        self._errors.last = None
        seg.errors = self._errors

    def detach(self) -> bool:
        """Detach from the segment; the last process to detach removes it.

        Releases the lock first if this object holds it.

        Returns
        -------
        bool
            True when detached now, False when it was not attached.

        Raises
        ------
        BufferError
            While memoryviews of `data` are still alive.

        Examples
        --------
        >>> import shmimage
        >>> shm = shmimage.SharedMemory("docs-detach-memory")
        >>> shm.create(4)
        >>> shm.detach(), shm.detach()
        (True, False)
        """
        seg = self._seg
        if seg is None:
            return False
        if not seg.detach():
            return False  # another thread detached it meanwhile
        self._seg = None
        return True

    @staticmethod
    def remove(key: str) -> None:
        """Remove a segment's name; attached processes keep their mapping.

        Works for persistent, stale and live segments: later `attach`
        calls get `NotFoundError`.

        Parameters
        ----------
        key : str
            The user key.

        Raises
        ------
        NotFoundError
            No segment has the name.
        InvalidKeyError
            An empty key.

        Examples
        --------
        >>> import shmimage
        >>> shm = shmimage.SharedMemory("docs-remove")
        >>> shm.create(4, persistent=True)
        >>> shm.detach()
        True
        >>> shmimage.SharedMemory.remove("docs-remove")   # the persistent segment goes
        """
        _check_key(key, "key")
        if not key:
            raise InvalidKeyError("no key given")
        _shmcore.remove(native_key_for(key), key)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- state --

    @property
    def is_attached(self) -> bool:
        """True while this object is attached to a segment."""
        return self._seg is not None

    def isAttached(self) -> bool:
        """Qt's spelling of `is_attached`.

        Returns
        -------
        bool
            As `is_attached`.

        Examples
        --------
        >>> import shmimage
        >>> shmimage.SharedMemory("docs-is-attached").isAttached()
        False
        """
        return self.is_attached

    @property
    def size(self) -> int:
        """The usable byte count asked for at `create` (0 when detached)."""
        return self._seg.size if self._seg is not None else 0

    @property
    def data(self) -> memoryview:
        """A memoryview of the `size` usable bytes (read-only in ``READ_ONLY``).

        Raises
        ------
        NotAttachedError
            When detached.
        """
        return memoryview(self._attached())

    @property
    def persistent(self) -> bool:
        """True when the segment outlives its creator until `remove`.

        Raises
        ------
        NotAttachedError
            When detached.
        """
        return self._attached().persistent

    def _attached(self) -> _shmcore.Segment:
        if self._seg is None:
            exc = NotAttachedError(f"{self._subject()} is not attached")
            self._failed(exc)
            raise exc
        return self._seg

    def _subject(self) -> str:
        key, name = self._key, self._native_key
        return f"{key!r} ({name})" if key and key != name else repr(name)

    # -- the lock (lock() and unlock() come from the compiled base) --

    @property
    def owner_died(self) -> bool:
        """True when the last lock() recovered it from a holder that died."""
        return bool(self._seg is not None and self._seg.owner_died)

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[SharedMemory]:
        """Context manager: lock, yield this object, unlock.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait for the lock; None waits for ever.

        Yields
        ------
        SharedMemory
            This object, holding the lock.

        Raises
        ------
        TimeoutError
            The lock was not acquired within `timeout`.
        LockError
            This thread already holds it, or the mapping is read-only.

        Examples
        --------
        >>> import shmimage
        >>> with shmimage.SharedMemory("docs-locked") as shm:
        ...     shm.create(4)
        ...     with shm.locked(timeout=1.0):
        ...         shm.data[0] = 1
        """
        if not self.lock(timeout):
            raise TimeoutError(f"could not lock {self._subject()} within {timeout} s")
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


def _probe(native_key: str) -> _shmcore.ProbeInfo | None:
    """Facts about a shmimage segment under a native name; None when there is
    none (a stale one is reclaimed on the way)."""
    try:
        facts = _shmcore.probe(native_key, True)
    except (SharedMemoryError, OSError):
        return None
    return facts if facts["ours"] and not facts["reclaimed"] else None


def _described(names: list[str], found: list[_shmcore.ProbeInfo]) -> list[SegmentInfo]:
    counts = _shmcore.attachments(found)
    return [
        SegmentInfo(key=f["key"], native_key=name, size=f["size"], attachments=n,
                    persistent=f["persistent"])
        for name, f, n in zip(names, found, counts)
    ]


def segment_info(native_key: str) -> SegmentInfo | None:
    """The shmimage segment under one native name, or None when there is none
    (a stale one is reclaimed on the way)."""
    facts = _probe(native_key)
    return None if facts is None else _described([native_key], [facts])[0]


def list_segments() -> list[SegmentInfo]:
    """shmimage's segments on this machine; stale ones are reclaimed on the way."""
    names, found = [], []
    for name in _shmcore.segment_names():
        facts = _probe(name)
        if facts is not None:
            names.append(name)
            found.append(facts)
    return _described(names, found)


def collect_garbage() -> list[str]:
    """Remove every stale shmimage segment; their native names."""
    removed = []
    for name in _shmcore.segment_names(temporary=True):
        try:
            if _shmcore.probe(name, True)["reclaimed"]:
                removed.append(name)
        except (SharedMemoryError, OSError):
            continue
    return removed


__all__ = ["SegmentInfo", "SharedMemory", "collect_garbage", "list_segments", "native_key_for"]
