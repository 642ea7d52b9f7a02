"""`SharedImage`: frames of raw pixels in one named segment."""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np

from . import _shmcore
from .blocks import LoanBlock, ViewBlock
from .errors import (
    IncompatibleSegmentError,
    NotFoundError,
    OutOfResourcesError,
    SharedMemoryError,
)
from .imageio import array_to_pil, as_frame_array, check_frame_spec, load_image_file
from .memory import SharedMemory, header_key

if TYPE_CHECKING:
    from typing_extensions import Self

ImageLike = Union[np.ndarray, "os.PathLike[str]", str, Any]


# Bound on re-attaching to a store that keeps being replaced (grown): a
# hostile segment must not turn a call into an endless loop.
_RETRIES = 64


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    shape: tuple[int, ...]
    width: int
    height: int
    channels: int
    dtype: np.dtype
    generation: int
    timestamp_ns: int
    writer_pid: int


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # an array among b's items: check_frame_spec says what is wrong
        return False


class SharedImage:
    """The latest frame of an image stream, shared under a key."""

    def __init__(
        self,
        key: str = "QSharedMemoryExample",
        *,
        capacity: int | None = None,
        persistent: bool = False,
    ) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        if capacity is not None and (
            not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0
        ):
            raise ValueError(f"capacity must be a positive int, not {capacity!r}")
        self._memory = SharedMemory(key)
        self.key = key
        self.native_key = self._memory._name()
        self.capacity = capacity
        self.persistent = persistent
        self._store: _shmcore.FrameStore | None = None
        self._last_spec: tuple[tuple[int, ...], Any, tuple[tuple[int, ...], np.dtype[Any]]] | None = None

    # -- attaching --

    def _attach(self) -> _shmcore.FrameStore:
        store = self._store
        if store is not None and not store.superseded:
            return store
        self._store = None
        for _ in range(_RETRIES):
            seg = _shmcore.Segment.attach(self.native_key, True)
            try:
                store = _shmcore.FrameStore(seg)
            except BaseException:
                seg.detach()
                raise
            if not store.superseded:  # else it was replaced just now: again
                self._store = store
                return store
        raise IncompatibleSegmentError(
            f"{self.native_key!r} stays marked as replaced: not a segment to trust"
        )

    def _writer(self, nbytes: int) -> _shmcore.FrameStore:
        """The store to publish into, created on first use."""
        for _ in range(16):
            try:
                return self._attach()
            except NotFoundError:
                pass
            capacity = max(self.capacity or 0, nbytes)
            if capacity > _shmcore.MAX_FRAME_BYTES:
                raise OutOfResourcesError(f"a slot of {capacity} bytes is too large")
            store = _shmcore.FrameStore.build(
                capacity, header_key(self.key), self.persistent
            )
            try:
                store.segment.link(self.native_key)
            except FileExistsError:
                continue  # somebody else created it meanwhile: attach to theirs
            self._store = store
            return store
        raise SharedMemoryError(f"could not create or attach {self.key!r}")

    def _follow(self, store: _shmcore.FrameStore) -> None:
        """Move to the successor of a store that was grown or replaced."""
        self._store = store.successor if store.successor is not None else None

    def _replaced_too_often(self) -> IncompatibleSegmentError:
        return IncompatibleSegmentError(f"{self.native_key!r} keeps being replaced")

    # -- writing --

    def publish(
        self, image: ImageLike, timeout: float | None = None, *, mode: str | None = None
    ) -> int:
        """Copy a frame in.

        Parameters
        ----------
        image
            An ndarray of 2 to 4 dimensions and any numeric dtype, a PIL
            image, a path (an image file, or ``.npy``) or encoded image bytes.
            Images keep their decoded mode (16-bit stays uint16).
        timeout
            Seconds the whole call may take; None waits as long as it must.
        mode
            A Pillow mode to convert to first, e.g. ``"RGBA"``.

        Returns
        -------
        int
            The new frame's generation.

        Raises
        ------
        InvalidImageError
            Not an image, or an array no frame can be; the message says what
            is supported and never contains the payload.
        """
        array = as_frame_array(image, mode)
        for _ in range(_RETRIES):
            store = self._writer(array.nbytes)
            generation = store.publish(array, timeout)
            if generation:
                return generation
            self._follow(store)
        raise self._replaced_too_often()

    def loan(
        self, shape: tuple[int, ...], dtype: Any = np.uint8, timeout: float | None = None
    ) -> LoanBlock:
        """A writable frame inside the segment, published when the block ends."""
        return LoanBlock(self, shape, dtype, timeout)

    def _frame_spec(self, shape: tuple[int, ...], dtype: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """check_frame_spec, remembered for the last shape and dtype asked for."""
        last = self._last_spec
        if last is not None and last[1] is dtype and _same(last[0], shape):
            return last[2]
        spec = check_frame_spec(shape, np.dtype(dtype))
        self._last_spec = (shape, dtype, spec)
        return spec

    def _claim(
        self, shape: tuple[int, ...], dtype: np.dtype[Any], timeout: float | None
    ) -> tuple[_shmcore.FrameStore, tuple[int, np.ndarray]]:
        """A slot to loan and its array, from the store that has room."""
        nbytes = _shmcore.frame_bytes(shape, dtype)
        for _ in range(_RETRIES):
            store = self._writer(nbytes)
            claimed = store.loan_begin(shape, dtype, timeout)
            if claimed is not None:
                return store, claimed
            self._follow(store)
        raise self._replaced_too_often()

    def load_from_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The example's first button: decode, publish as RGBA, stay attached."""
        pixels = load_image_file(path)
        self.publish(pixels)
        return pixels

    # -- reading --

    def _pinned(self) -> tuple[_shmcore.FrameStore, int, _shmcore.FrameMeta]:
        for _ in range(_RETRIES):
            store = self._attach()
            try:
                slot, meta = store.pin()
            except SharedMemoryError:
                if store.superseded:
                    self._store = None
                    continue
                raise
            return store, slot, meta
        raise self._replaced_too_often()

    def read(self) -> np.ndarray:
        """A private copy of the latest complete frame."""
        store, slot, meta = self._pinned()
        try:
            return store.copy_out(slot, meta[0], meta[1])
        finally:
            store.unpin(slot)

    def view(self) -> ViewBlock:
        """A read-only zero-copy array of the latest frame, stable in the block."""
        return ViewBlock(self)

    def to_pil(self) -> Any:
        """The latest frame as a PIL image.

        Returns
        -------
        PIL.Image.Image
            ``L``, ``LA``, ``RGB`` or ``RGBA`` for uint8 frames; ``I;16``,
            ``I``, ``F`` and ``1`` for single-channel uint16, int32, float32
            and bool frames.

        Raises
        ------
        InvalidImageError
            For any other frame, naming its shape and dtype.
        """
        return array_to_pil(self.read())

    def info(self) -> FrameInfo:
        store = self._attach()
        shape, dtype, generation, timestamp_ns, pid = store.info()
        return FrameInfo(
            shape=shape,
            width=shape[1],
            height=shape[0],
            channels=shape[2] if len(shape) == 3 else 1,
            dtype=dtype,
            generation=generation,
            timestamp_ns=timestamp_ns,
            writer_pid=pid,
        )

    def wait(self, timeout: float | None = None, after: int | None = None) -> int:
        """Block until a frame newer than `after` (default: the current one)."""
        store = self._attach()
        if after is None:
            after = store.generation
        for _ in range(_RETRIES):
            generation = store.wait(after, timeout)
            if generation:
                return generation
            self._store = None
            store = self._attach()
        raise self._replaced_too_often()

    def load_from_memory(self) -> np.ndarray:
        """The example's second button: attach, lock, copy, unlock, detach."""
        memory = SharedMemory(self.key)
        memory.attach()
        store = None
        try:
            store = _shmcore.FrameStore(cast("_shmcore.Segment", memory._seg))
            with memory.locked():
                slot, meta = store.pin()
                try:
                    return store.copy_out(slot, meta[0], meta[1])
                finally:
                    store.unpin(slot)
        finally:
            del store
            memory.detach()

    # -- lifetime --

    @property
    def is_attached(self) -> bool:
        return self._store is not None

    def detach(self) -> bool:
        """Leave; the mapping lives on while arrays from view()/loan() do."""
        store, self._store = self._store, None
        if store is None:
            return False
        store.forget_arrays()
        # Arrays from view()/loan() or another thread's wait() still use the
        # mapping: it goes when the last of them lets go of the store.
        if not store.segment.export_count and not store.segment.waiting_count:
            store.segment.detach()
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        return f"<SharedImage key={self.key!r} native_key={self.native_key!r}>"

    # -- Python's protocols --

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as key and options; the copy attaches on first use."""
        return (_unpickle, (self.key, {"capacity": self.capacity, "persistent": self.persistent}))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``numpy.asarray(image)`` is ``image.read()``."""
        frame = self.read()
        return frame if dtype is None else frame.astype(dtype, copy=False)


def _unpickle(key: str, options: dict[str, Any]) -> SharedImage:
    return SharedImage(key, **options)
