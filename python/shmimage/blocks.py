"""The `with` blocks of `SharedImage.view()`, `view_frame()` and `loan()`.

Plain classes rather than `contextlib.contextmanager`: a loan()+view() round
trip costs little more than its wake-up, and a generator-based block cost
several times what pinning a slot does when its code is cold.

A block holds one reference to its array and drops it at the end; the pin
belongs to the array's base (a FramePin), so it lasts while the user keeps
the array, or anything derived from it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .frameinfo import Frame, frame_info

if TYPE_CHECKING:
    from . import _shmcore


class BlockOwner(Protocol):
    """What a block asks of the image that made it (`SharedImage`), named
    here so that this module needs nothing from the image module."""

    _store: _shmcore.FrameStore | None

    def _attach(self) -> _shmcore.FrameStore: ...

    def _where(self) -> str: ...

    def _frame_spec(
        self, shape: tuple[int, ...], dtype: Any
    ) -> tuple[tuple[int, ...], np.dtype[Any]]: ...

    def _claim(
        self, shape: tuple[int, ...], dtype: np.dtype[Any], timeout: float | None,
        meta_len: int = 0,
    ) -> tuple[_shmcore.FrameStore, int, np.ndarray]: ...


class ViewBlock:
    """Pins the latest frame while its array (or the Frame) is referenced."""

    __slots__ = ("_as_frame", "_held", "_image")

    def __init__(self, image: BlockOwner, as_frame: bool = False) -> None:
        self._image = image
        self._as_frame = as_frame
        self._held: np.ndarray | None = None

    def __enter__(self) -> Any:
        if self._held is not None:
            raise RuntimeError("this view() block is already open")
        store, array, facts = self._image._attach().view()
        self._image._store = store
        self._held = array
        if self._as_frame:
            return Frame(array, frame_info(facts, self._image._where()))
        return array

    def __exit__(self, *exc: object) -> None:
        self._held = None


class LoanBlock:
    """Claims a slot on entry; publishes it on a clean exit unless cancelled.

    After the block the yielded array is read-only; a published one stays a
    pinned view of its frame while referenced.
    """

    __slots__ = ("_array", "_cancelled", "_dtype", "_image", "_meta", "_shape", "_slot",
                 "_store", "_timeout")

    def __init__(self, image: BlockOwner, shape: Any, dtype: Any, timeout: float | None,
                 meta: bytes | None = None) -> None:
        self._image = image
        self._shape, self._dtype, self._timeout = shape, dtype, timeout
        self._meta = meta
        self._store: Any = None
        self._array: np.ndarray | None = None
        self._slot = -1
        self._cancelled = False

    def __enter__(self) -> np.ndarray:
        if self._store is not None:
            raise RuntimeError("this loan() block is already open")
        self._shape, self._dtype = self._image._frame_spec(tuple(self._shape), self._dtype)
        meta_len = len(self._meta) if self._meta else 0
        store, slot, array = self._image._claim(self._shape, self._dtype, self._timeout, meta_len)
        self._store, self._slot, self._array = store, slot, array
        self._cancelled = False
        return array

    def cancel(self) -> None:
        """Publish nothing when the block ends."""
        self._cancelled = True

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        store, self._store = self._store, None
        array, self._array = self._array, None
        if store is None or array is None:
            return
        pin: Any = array.base  # the claim's FramePin
        array.flags.writeable = False
        pin.freeze()
        commit = exc_type is None and not self._cancelled
        store.loan_end(self._slot, self._shape, self._dtype, commit, self._meta, pin)
