"""The `with` blocks of `SharedImage.view()` and `SharedImage.loan()`.

Plain classes rather than `contextlib.contextmanager`: a loan()+view() round
trip costs little more than its wake-up, and a generator-based block cost
several times what pinning a slot does when its code is cold.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from . import _shmcore
    from .image import SharedImage


class ViewBlock:
    """Pins the latest frame's slot on entry and unpins it on exit."""

    __slots__ = ("_image", "_slot", "_store")

    def __init__(self, image: SharedImage) -> None:
        self._image = image
        self._store: _shmcore.FrameStore | None = None
        self._slot = -1

    def __enter__(self) -> np.ndarray:
        if self._store is not None:
            raise RuntimeError("this view() block is already open")
        store, slot, meta = self._image._pinned()
        try:
            array: np.ndarray = store.array(slot, meta[0], meta[1], False)
        except BaseException:
            store.unpin(slot)
            raise
        self._store, self._slot = store, slot
        return array

    def __exit__(self, *exc: object) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.unpin(self._slot)


class LoanBlock:
    """Claims a slot on entry; publishes it on a clean exit, drops it otherwise."""

    __slots__ = ("_dtype", "_image", "_shape", "_slot", "_store", "_timeout")

    def __init__(self, image: SharedImage, shape: Any, dtype: Any, timeout: float | None) -> None:
        self._image = image
        self._shape, self._dtype, self._timeout = shape, dtype, timeout
        self._store: _shmcore.FrameStore | None = None
        self._slot = -1

    def __enter__(self) -> np.ndarray:
        if self._store is not None:
            raise RuntimeError("this loan() block is already open")
        self._shape, self._dtype = self._image._frame_spec(tuple(self._shape), self._dtype)
        store, slot, array = self._image._claim(self._shape, self._dtype, self._timeout)
        self._store, self._slot = store, slot
        return array

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.loan_end(self._slot, self._shape, self._dtype, exc_type is None)
