"""`SharedImage`: frames of raw pixels in one named segment."""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Union, cast

import numpy as np

from . import _shmcore
from .blocks import LoanBlock, ViewBlock
from .deadlines import deadline_of, time_left
from .errors import NotAttachedError, NotFoundError, OutOfResourcesError
from .frameinfo import Frame, FrameInfo, encode_meta, frame_info
from .imageio import array_to_pil, as_frame_array, check_frame_spec, load_image_file
from .memory import SharedMemory, header_key
from .subscription import Subscription

if TYPE_CHECKING:
    from typing_extensions import Self

ImageLike = Union[np.ndarray, "os.PathLike[str]", str, Any]

__all__ = ["Frame", "FrameInfo", "SharedImage"]

# Store options when creating: capacity 0 is the first frame's size.
DEFAULTS = {"capacity": 0, "slots": 3, "max_slots": 16, "history": 1}


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # an array among b's items: check_frame_spec says what is wrong
        return False


def _option(name: str, value: int | None, low: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an int >= {low} or None, not {value!r}")
    return value


class SharedImage:
    """The latest frames of an image stream, shared under a key.

    Parameters
    ----------
    key
        The user's key; the segment is ``SharedMemory(key).native_key``.
    capacity
        Pixel bytes of one slot, a lower bound (frames larger grow the store,
        and it never shrinks below this). None: the existing store's, or the
        first frame's size when creating.
    slots
        Spare slots for writing and pinning at first (at least 2). None: the
        existing store's, or 3.
    max_slots
        Spare slots the store may take when readers pin the others. None:
        the existing store's, or 16.
    history
        Complete frames kept (1: the latest only). None: the existing
        store's, or 1.
    persistent
        Keep the segment after the last process leaves (also marks an
        existing segment).

    Notes
    -----
    Only an explicit option that differs from the existing store's rebuilds
    the store, under the same name, carrying the kept frames (the newest
    `history` of them) and every live lossless subscriber's position. A
    rebuild to a smaller history first waits until those subscribers have
    taken the frames it would not keep, within the first call's `timeout`
    (`TimeoutError` names the slow subscriber's pid; calls without a
    timeout wait as long as it takes).

    Raises
    ------
    TypeError
        `key` is not a str.
    ValueError
        An option is out of its range.

    Examples
    --------
    >>> import numpy as np, shmimage
    >>> with shmimage.SharedImage("docs-image", history=4) as img:
    ...     img.publish(np.zeros((480, 640, 3), np.uint8), meta={"index": 0})
    ...     img.info().shape
    1
    (480, 640, 3)
    """

    def __init__(
        self,
        key: str = "QSharedMemoryExample",
        *,
        capacity: int | None = None,
        slots: int | None = None,
        max_slots: int | None = None,
        history: int | None = None,
        persistent: bool = False,
    ) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        self._memory = SharedMemory(key)
        self.key = key
        self.native_key = self._memory._name()
        self.capacity = _option("capacity", capacity, 1)
        self._asked = {
            "slots": _option("slots", slots, 2),
            "max_slots": _option("max_slots", max_slots, 2),
            "history": _option("history", history, 1),
        }
        self.persistent = persistent
        self._store: _shmcore.FrameStore | None = None
        self._last_spec: tuple[tuple[int, ...], Any, tuple[tuple[int, ...], np.dtype[Any]]] | None = None
        self._waits: set[Any] = set()  # stores and key watches wait() sleeps on
        self._detaches = 0
        self._mu = threading.Lock()

    def _where(self) -> str:
        return f"{self.key!r} ({self.native_key})"

    # -- attaching --

    def _attach(self, timeout: float | None = None) -> _shmcore.FrameStore:
        """The store to read from (C follows one that was replaced); `timeout`
        bounds a rebuild this object's options ask for."""
        store = self._store
        if store is None:
            found = _shmcore.FrameStore.attach(self.native_key, user_key=self.key)
            store = self._store = self._settle(found, timeout)
        elif store.successor is not None:
            store = self._store = store.live
        return store

    def _explicit(self) -> dict[str, int]:
        asked = dict(self._asked, capacity=self.capacity)
        return {k: v for k, v in asked.items() if v is not None}

    def _settle(self, store: _shmcore.FrameStore,
                timeout: float | None = None) -> _shmcore.FrameStore:
        """Apply this object's explicit options to a store it found: mark it
        persistent, rebuild it when an option differs (a rebuild to a smaller
        history waits up to `timeout` for lossless subscribers)."""
        if self.persistent and not store.segment.persistent:
            store.set_persistent()
        have = cast("dict[str, int]", dict(store.options))
        want = {**have, **self._explicit()}
        if self._asked["max_slots"] is None and want["slots"] > want["max_slots"]:
            want["max_slots"] = want["slots"]
        if all(want[k] == have[k] for k in DEFAULTS):
            return store
        capacity = max(want["capacity"], have["slot_capacity"] if self.capacity is None else 0)
        return store.rebuild(capacity, want["slots"], want["max_slots"], want["history"],
                             want["capacity"], timeout)

    def _writer(self, nbytes: int, timeout: float | None = None) -> _shmcore.FrameStore:
        """The store to publish into, created on first use."""
        if self._store is not None:
            return self._attach(timeout)
        capacity = max(self.capacity or 0, nbytes)
        if capacity > _shmcore.MAX_FRAME_BYTES:
            raise OutOfResourcesError(f"a slot of {capacity} bytes is too large")
        o = {**DEFAULTS, **self._explicit()}
        if self._asked["max_slots"] is None:
            o["max_slots"] = max(o["max_slots"], o["slots"])
        store = _shmcore.FrameStore.attach(
            self.native_key,
            create=True,
            user_key=self.key,
            key=header_key(self.key),
            persistent=self.persistent,
            capacity=capacity,
            slots=o["slots"],
            max_slots=o["max_slots"],
            history=o["history"],
            min_capacity=self.capacity or 0,
        )
        self._store = store = self._settle(store, timeout)
        return store

    # -- writing --

    def publish(
        self,
        image: ImageLike,
        timeout: float | None = None,
        *,
        meta: dict[str, Any] | None = None,
        mode: str | None = None,
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
        meta
            A dict of JSON-serialisable values stored with this frame (at
            most 64 KiB encoded); ``info().meta`` and ``read_frame()`` return it.
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
        ValueError
            `meta` is not JSON-serialisable or larger than 64 KiB encoded.
        TimeoutError
            Every slot up to ``max_slots`` stayed pinned by other processes
            or other threads past `timeout`; the message names the
            processes and their pins.
        BufferError
            The calling thread took every pin this process holds and those
            pin every slot up to ``max_slots``: raised at once, since no one
            else could free a slot. Pins taken by other live threads of
            this process are waited for, as other processes' are (those of
            a thread that has ended count as the caller's).

        Notes
        -----
        The GIL is released while the call waits and while it copies; a
        frame of at most 64 KiB into a store no other writer holds at that
        moment is published without releasing it.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-publish") as img:
        ...     img.publish(np.arange(6, dtype=np.uint16).reshape(2, 3), meta={"t": 1})
        ...     img.read()
        1
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint16)
        """
        try:
            data = None if meta is None else encode_meta(meta)
            array = as_frame_array(image, mode)
            store = self._store
            if store is None or store.successor is not None:
                deadline = deadline_of(timeout)
                store = self._writer(array.nbytes, timeout)
                timeout = time_left(deadline)
            generation: int = store.publish(array, timeout, data)
        except (TimeoutError, BufferError, ValueError) as exc:
            raise self._named(exc) from None
        return generation

    def _named(self, exc: BaseException) -> BaseException:
        """`exc` with a message that names this image's key first (errors
        from the core already do)."""
        where = self._where()
        message = str(exc)
        if message.startswith((f"no segment {where}", where)):
            return exc
        named = type(exc)(f"{where}: {message}")
        named.__dict__.update(exc.__dict__)  # e.g. a SharedMemoryError's code
        return named

    def loan(
        self,
        shape: tuple[int, ...],
        dtype: Any = np.uint8,
        timeout: float | None = None,
        *,
        meta: dict[str, Any] | None = None,
    ) -> LoanBlock:
        """A writable frame inside the segment, published when the block ends.

        Parameters
        ----------
        shape, dtype
            The frame's geometry, as for an ndarray given to `publish`.
        timeout
            Seconds to wait for a slot; None waits as long as it must.
        meta
            A dict stored with the frame, as for `publish`.

        Returns
        -------
        LoanBlock
            A context manager yielding the writable array; leaving the block
            publishes it, an exception or ``block.cancel()`` publishes
            nothing. After the block the yielded array is read-only, and a
            published one stays a pinned view of its frame while referenced
            (arrays derived from it inside the block stay writable).

        Raises
        ------
        ValueError
            `meta` is not JSON-serialisable or larger than 64 KiB encoded.
        TimeoutError, BufferError
            As for `publish`, on entering the block.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-loan") as img:
        ...     with img.loan((2, 4), np.uint8, meta={"index": 0}) as frame:
        ...         frame[:] = 7                      # filled in place: no copy
        ...     int(img.read().sum()), img.info().meta
        (56, {'index': 0})
        """
        try:
            data = encode_meta(meta)
        except ValueError as exc:
            raise self._named(exc) from None
        return LoanBlock(self, shape, dtype, timeout, data)

    def _frame_spec(self, shape: tuple[int, ...], dtype: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """check_frame_spec, remembered for the last shape and dtype asked for."""
        last = self._last_spec
        if last is not None and last[1] is dtype and _same(last[0], shape):
            return last[2]
        try:
            spec = check_frame_spec(shape, np.dtype(dtype))
        except ValueError as exc:
            raise self._named(exc) from None
        self._last_spec = (shape, dtype, spec)
        return spec

    def _claim(
        self, shape: tuple[int, ...], dtype: np.dtype[Any], timeout: float | None, meta_len: int = 0
    ) -> tuple[_shmcore.FrameStore, int, np.ndarray]:
        """A slot to loan, its store and its array (C grows or follows the store)."""
        store = self._store
        if store is None or store.successor is not None:  # loan_begin checks the size
            deadline = deadline_of(timeout)
            store = self._writer(_shmcore.frame_bytes(shape, dtype), timeout)
            timeout = time_left(deadline)
        try:
            return store.loan_begin(shape, dtype, timeout, meta_len)
        except (TimeoutError, BufferError) as exc:
            raise type(exc)(f"{self._where()}: {exc}") from None

    def load_from_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The example's first button: decode, publish as RGBA, stay attached.

        Parameters
        ----------
        path : str or os.PathLike
            An image file Pillow can decode.

        Returns
        -------
        numpy.ndarray
            The published (H, W, 4) uint8 RGBA pixels.

        Raises
        ------
        InvalidImageError
            The file is not an image, truncated, or too large.
        FileNotFoundError
            No such file.

        Examples
        --------
        >>> import shmimage
        >>> from shmimage.sample import SAMPLE_PATH
        >>> with shmimage.SharedImage("docs-load-file") as img:
        ...     img.load_from_file(SAMPLE_PATH).shape[2]
        4
        """
        pixels = load_image_file(path)
        self.publish(pixels)
        return pixels

    # -- reading --

    def _read(self, out: np.ndarray | None) -> tuple[np.ndarray, tuple[Any, ...]]:
        store, array, facts = self._attach().read(out)
        self._store = store
        return array, facts

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """A private copy of the latest complete frame, never torn.

        Parameters
        ----------
        out
            An array to copy into (same shape and dtype as the frame,
            C-contiguous, writable): nothing is allocated.

        Returns
        -------
        numpy.ndarray
            `out` when given, else a new array.

        Raises
        ------
        ValueError
            `out` does not match the frame.
        NoFrameError, NotFoundError
            Nothing published yet, or no segment.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-read") as img:
        ...     _ = img.publish(np.full((2, 2), 9, np.uint8))
        ...     buffer = np.empty((2, 2), np.uint8)
        ...     img.read(out=buffer) is buffer, int(buffer[0, 0])
        (True, 9)
        """
        return self._read(out)[0]

    def read_frame(self, out: np.ndarray | None = None) -> Frame:
        """As `read`, with the facts of that same frame.

        Parameters
        ----------
        out
            As for `read`.

        Returns
        -------
        Frame
            ``(pixels, info)``; ``info.generation`` and ``info.meta`` are
            those of the copied pixels.

        Raises
        ------
        ValueError, NoFrameError, NotFoundError
            As for `read`.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-read-frame") as img:
        ...     _ = img.publish(np.zeros((2, 2), np.uint8), meta={"index": 3})
        ...     pixels, info = img.read_frame()
        ...     info.generation, info.meta["index"]
        (1, 3)
        """
        pixels, facts = self._read(out)
        return Frame(pixels, frame_info(facts, self._where()))

    def view(self) -> ViewBlock:
        """A read-only zero-copy array of the latest frame.

        Returns
        -------
        ViewBlock
            A context manager yielding the array. The array, and every array
            derived from it, never changes while it is referenced: its slot
            stays pinned until the last reference is gone (the block's end
            drops only the block's own reference).

        Raises
        ------
        NoFrameError, NotFoundError
            On entering the block: nothing published yet, or no segment.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-view") as img:
        ...     _ = img.publish(np.ones((2, 3), np.uint8))
        ...     with img.view() as pixels:      # zero-copy, read-only
        ...         print(pixels.shape, pixels.flags.writeable)
        (2, 3) False
        """
        return ViewBlock(self)

    def view_frame(self) -> ViewBlock:
        """As `view`, yielding a `Frame`: the pinned pixels and their facts.

        Returns
        -------
        ViewBlock
            A context manager yielding a `Frame` whose ``pixels`` are a
            read-only zero-copy view, pinned while referenced, and whose
            ``info`` describes that same frame.

        Raises
        ------
        NotFoundError
            No segment has the key (on entering the block).
        NoFrameError
            Nothing was published yet.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-view-frame") as img:
        ...     _ = img.publish(np.zeros((2, 3), np.uint8), meta={"i": 7})
        ...     with img.view_frame() as frame:
        ...         print(frame.pixels.shape, frame.info.meta)
        (2, 3) {'i': 7}
        """
        return ViewBlock(self, as_frame=True)

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

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-to-pil") as img:
        ...     _ = img.publish(np.zeros((2, 3, 3), np.uint8))
        ...     img.to_pil().mode, img.to_pil().size
        ('RGB', (3, 2))
        """
        return array_to_pil(self.read())

    def info(self) -> FrameInfo:
        """Facts of the latest frame, its meta included.

        Returns
        -------
        FrameInfo

        Raises
        ------
        NoFrameError, NotFoundError
            Nothing published yet, or no segment.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-info") as img:
        ...     _ = img.publish(np.zeros((4, 6, 3), np.uint8), meta={"camera": 2})
        ...     info = img.info()
        ...     info.width, info.height, info.channels, info.dtype, info.meta
        (6, 4, 3, dtype('uint8'), {'camera': 2})
        """
        store = self._attach()
        facts = store.info()
        return frame_info(facts, self._where())

    def wait(self, timeout: float | None = None, after: int | None = None) -> int:
        """Block until a frame newer than generation `after` is published.

        Works before the segment exists: it then waits for the key to
        appear and its first frame. The GIL is released; no CPU is used
        while waiting.

        Parameters
        ----------
        timeout
            Seconds; None waits as long as it takes.
        after
            A generation; None: the current one (0 when there is no segment).

        Returns
        -------
        int
            The generation of the newer frame.

        Raises
        ------
        TimeoutError
            None within `timeout`.
        NotAttachedError
            `detach()` was called meanwhile, from another thread.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-wait") as img:
        ...     seen = img.publish(np.zeros((2, 2), np.uint8))
        ...     _ = img.publish(np.ones((2, 2), np.uint8))
        ...     img.wait(timeout=1.0, after=seen)       # returns at once: a newer frame exists
        ...     try:
        ...         img.wait(timeout=0.05)
        ...     except TimeoutError:
        ...         print("no newer frame")
        2
        no newer frame
        """
        epoch = self._detaches
        store = self._store
        if store is None or store.successor is not None:
            deadline = deadline_of(timeout)
            try:
                store = self._attach(timeout)
            except NotFoundError:
                store = self._appear(deadline, epoch)
                after = 0 if after is None else after
            timeout = time_left(deadline)
        # else attached: the core checks `timeout` and times the whole wait
        if after is None:
            after = store.generation
        with self._mu:
            if epoch != self._detaches:
                raise NotAttachedError(f"wait on {self._where()}: detached")
            self._waits.add(store)
        try:
            generation: int = store.wait(after, timeout)
        finally:
            with self._mu:
                self._waits.discard(store)
        return generation

    def _appear(self, deadline: float | None, epoch: int) -> _shmcore.FrameStore:
        """Attach, waiting for the key to appear when it does not exist."""
        watch = _shmcore.KeyWatch(self.native_key)
        with self._mu:
            self._waits.add(watch)
        try:
            while True:
                if epoch != self._detaches:
                    raise NotAttachedError(f"wait on {self._where()}: detached")
                try:
                    return self._attach(time_left(deadline))
                except NotFoundError:
                    pass
                left = time_left(deadline)
                if left == 0:
                    raise TimeoutError(f"no segment {self._where()} within the timeout")
                watch.wait(0.1 if left is None else min(left, 0.1))
        finally:
            with self._mu:
                self._waits.discard(watch)

    def subscribe(self, lossless: bool = False, start: str = "next", copy: bool = False) -> Subscription:
        """An ordered stream of this store's frames, each once.

        Parameters
        ----------
        lossless
            Register in the segment (at most 64 at once, else
            `OutOfResourcesError`): `publish`/`loan` wait before dropping a
            frame this subscription has not taken, and on their `timeout`
            raise `TimeoutError` naming its pid.
        start
            ``"next"``: frames published after this call; ``"latest"``: the
            current frame first; ``"oldest"``: the oldest frame still kept.
        copy
            Return private copies instead of pinned zero-copy arrays.

        Returns
        -------
        Subscription

        Raises
        ------
        ValueError
            `start` is not one of the three.
        OutOfResourcesError
            A lossless subscription beyond 64 at once.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-subscribe", history=4) as img:
        ...     sub = img.subscribe(lossless=True, start="next")
        ...     for i in range(3):
        ...         _ = img.publish(np.full((2, 2), i, np.uint8))
        ...     [int(sub.next(timeout=1.0).pixels[0, 0]) for _ in range(3)]
        ...     sub.close()
        [0, 1, 2]
        """
        return Subscription(self, lossless=lossless, start=start, copy=copy)

    def end_stream(self, timeout: float | None = None) -> None:
        """End the stream at the latest frame: subscriptions return what is
        kept, then raise `EndOfStream`; the next publish starts a new stream.

        Parameters
        ----------
        timeout
            Seconds to wait for the segment's lock; None: as long as it takes.

        Raises
        ------
        NotFoundError
            No segment has the key.
        TimeoutError
            The lock was not taken within `timeout`.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-end-stream", history=4) as img:
        ...     sub = img.subscribe(start="next")
        ...     _ = img.publish(np.zeros((2, 2), np.uint8))
        ...     img.end_stream()
        ...     len(list(sub))                    # the kept frame, then the end
        1
        """
        self._attach().end_stream(timeout)

    def status(self) -> dict[str, Any]:
        """The store as it is now.

        Returns
        -------
        dict
            ``key``, ``native_key``, ``options`` (capacity, slots, max_slots,
            history, slot_capacity), ``slots_in_use`` and ``table_slots``,
            ``generation``, ``persistent``, ``pins`` (a list of ``{"pid",
            "pins", "slots"}``, one per pinning handle) and ``subscribers``
            (a list of ``{"pid", "mode", "next", "lag"}``: every lossless
            subscriber, and lossy ones while the registry has room).

        Raises
        ------
        NotFoundError
            No segment has the key.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-status") as img:
        ...     _ = img.publish(np.zeros((2, 2), np.uint8))
        ...     status = img.status()
        ...     status["generation"], status["options"]["history"]
        (1, 1)
        """
        store = self._attach()
        used, table = store.slots_in_use()
        return {
            "key": self.key,
            "native_key": self.native_key,
            "options": store.options,
            "slots_in_use": used,
            "table_slots": table,
            "generation": store.generation,
            "persistent": store.segment.persistent,
            "pins": [{"pid": p, "pins": n, "slots": s} for p, n, s in store.pinners()],
            "subscribers": [
                {"pid": p, "mode": "lossless" if lossless else "lossy", "next": nxt,
                 "lag": max(store.generation + 1 - nxt, 0)}
                for p, lossless, nxt in store.subscribers()
            ],
        }

    def load_from_memory(self) -> np.ndarray:
        """The example's second button: attach, lock, copy, unlock, detach.

        Returns
        -------
        numpy.ndarray
            A private copy of the latest frame.

        Raises
        ------
        NotFoundError
            No segment has the key.
        NoFrameError
            Nothing was published yet.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-load-memory") as img:
        ...     _ = img.publish(np.zeros((2, 2, 4), np.uint8))
        ...     shmimage.SharedImage("docs-load-memory").load_from_memory().shape
        (2, 2, 4)
        """
        memory = SharedMemory(self.key)
        memory.attach()
        store = None
        try:
            store = _shmcore.FrameStore(cast("_shmcore.Segment", memory._seg))
            with memory.locked():
                pixels: np.ndarray = store.read()[1]
                return pixels
        finally:
            del store
            memory.detach()

    # -- lifetime --

    @property
    def is_attached(self) -> bool:
        """True while this object is attached to the store's segment."""
        return self._store is not None

    def detach(self) -> bool:
        """Leave at once; never raises BufferError.

        Arrays from `view()`/`loan()` still alive keep their pins, the
        mapping and this process's share in the segment's lifetime until
        they are freed. A thread blocked in `wait()` wakes with
        `NotAttachedError`.

        Returns
        -------
        bool
            Whether it was attached.

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> img = shmimage.SharedImage("docs-detach")
        >>> _ = img.publish(np.zeros((2, 2), np.uint8))
        >>> img.detach(), img.detach()
        (True, False)
        """
        with self._mu:
            self._detaches += 1
            for waiting in self._waits:
                waiting.cancel() if isinstance(waiting, _shmcore.KeyWatch) else waiting.cancel_waits()
        store, self._store = self._store, None
        if store is None:
            return False
        store = store.live
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
        options = {"capacity": self.capacity, "persistent": self.persistent, **self._asked}
        return (_unpickle, (self.key, options))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``numpy.asarray(image)`` is ``image.read()``."""
        frame = self.read()
        return frame if dtype is None else frame.astype(dtype, copy=False)


def _unpickle(key: str, options: dict[str, Any]) -> SharedImage:
    return SharedImage(key, **options)
