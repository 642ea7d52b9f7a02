"""`SharedImage`: frames of raw pixels in one named segment."""
from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np

from . import _shmcore
from .blocks import LoanBlock, ViewBlock
from .errors import OutOfResourcesError
from .imageio import array_to_pil, as_frame_array, check_frame_spec, load_image_file
from .memory import SharedMemory, header_key

if TYPE_CHECKING:
    from typing_extensions import Self

ImageLike = Union[np.ndarray, "os.PathLike[str]", str, Any]


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
        """The store to read from (C follows one that was replaced)."""
        store = self._store
        if store is None:
            store = self._store = _shmcore.FrameStore.attach(self.native_key)
        elif store.successor is not None:
            store = self._store = store.live
        return store

    def _writer(self, nbytes: int) -> _shmcore.FrameStore:
        """The store to publish into, created on first use."""
        if self._store is not None:
            return self._attach()
        capacity = max(self.capacity or 0, nbytes)
        if capacity > _shmcore.MAX_FRAME_BYTES:
            raise OutOfResourcesError(f"a slot of {capacity} bytes is too large")
        store = self._store = _shmcore.FrameStore.attach(
            self.native_key,
            create=True,
            key=header_key(self.key),
            persistent=self.persistent,
            capacity=capacity,
        )
        return store

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
        generation: int = self._writer(array.nbytes).publish(array, timeout)
        return generation

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
    ) -> tuple[_shmcore.FrameStore, int, np.ndarray]:
        """A slot to loan, its store and its array (C grows or follows the store)."""
        nbytes = _shmcore.frame_bytes(shape, dtype)
        return self._writer(nbytes).loan_begin(shape, dtype, timeout)

    def load_from_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The example's first button: decode, publish as RGBA, stay attached."""
        pixels = load_image_file(path)
        self.publish(pixels)
        return pixels

    # -- reading --

    def _pinned(self) -> tuple[_shmcore.FrameStore, int, _shmcore.FrameMeta]:
        pinned = self._attach().pin()
        self._store = pinned[0]
        return pinned

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
        shape, dtype, generation, timestamp_ns, pid = self._attach().info()
        # A batch (N, H, W, C) describes each of its frames.
        frame = shape[1:] if len(shape) == 4 else shape
        return FrameInfo(
            shape=shape,
            width=frame[1],
            height=frame[0],
            channels=frame[2] if len(frame) == 3 else 1,
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
        generation: int = store.wait(after, timeout)
        return generation

    def load_from_memory(self) -> np.ndarray:
        """The example's second button: attach, lock, copy, unlock, detach."""
        memory = SharedMemory(self.key)
        memory.attach()
        store = None
        try:
            store = _shmcore.FrameStore(cast("_shmcore.Segment", memory._seg))
            with memory.locked():
                pinned, slot, meta = store.pin()
                try:
                    return pinned.copy_out(slot, meta[0], meta[1])
                finally:
                    pinned.unpin(slot)
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
        store = store.live
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
