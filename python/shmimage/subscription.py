"""`Subscription`: the frames of one store, in generation order, each once."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import _shmcore
from .deadlines import time_left
from .errors import EndOfStream, NotAttachedError, NotFoundError, OutOfResourcesError
from .frameinfo import Frame, frame_info
from .waiter import WAITER, Wait

if TYPE_CHECKING:
    from typing_extensions import Self


class Source(Protocol):
    """What a subscription asks of the image it follows (`SharedImage`),
    named here so that this module needs nothing from the image module."""

    key: str
    native_key: str

    def wait(self, timeout: float | None = None, after: int | None = None) -> int: ...

STARTS = ("next", "latest", "oldest")

#: Forks this process descends through: os.getpid() is a system call, and
#: a subscription asked it twice per frame to notice it was inherited.
_forks = [0]


def _forked() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Subscription:
    """An ordered stream of a `SharedImage`'s frames.

    Made by `SharedImage.subscribe`. Each `next()` returns the frame of the
    lowest generation not yet returned that the store still keeps. Lossy
    (the default): the writer never waits for it; frames overwritten before
    they were taken are skipped and counted in `dropped`; it is listed in
    `status()` while the registry has room (a lossless subscriber that
    finds no free entry takes a lossy one's, which then goes on unlisted).
    Lossless: the subscription is registered in the segment (at most 64),
    and the writer waits before dropping a frame it has not taken, also
    across a store replaced under its name (grown, shrunk, rebuilt); it is
    unregistered when closed, collected, or when its process dies (a
    kernel-held lock). A forked child's inherited subscription attaches
    anew on first use, from where the parent's stood at the fork.

    Parameters
    ----------
    image
        The `SharedImage` whose frames it follows. Made before the key
        exists, it starts at the oldest frame the store keeps when the key
        appears; a lossless one holds the writer back only from then on, so
        a writer that must not outrun it waits until `status()` lists it.
    lossless, start, copy
        As for `SharedImage.subscribe`.

    Raises
    ------
    ValueError
        `start` is not ``"next"``, ``"latest"`` or ``"oldest"``.

    Examples
    --------
    >>> import numpy as np, shmimage
    >>> with shmimage.SharedImage("docs-subscription", history=8) as img:
    ...     with img.subscribe(start="next") as sub:
    ...         for i in range(3):
    ...             _ = img.publish(np.full((2, 2), i, np.uint8), meta={"index": i})
    ...         img.end_stream()
    ...         [frame.info.meta["index"] for frame in sub], sub.dropped
    ([0, 1, 2], 0)
    """

    def __init__(self, image: Source, *, lossless: bool = False, start: str = "next",
                 copy: bool = False) -> None:
        if start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}, not {start!r}")
        self._image = image
        self._where = f"{image.key!r} ({image.native_key})"
        self._start = start
        self._copy = bool(copy)
        self._lossless = bool(lossless)
        self._entry = -1  # registry entry (-1: none; a lossy one may go unlisted)
        self._token = 0  # its identity in the registry, kept across rebuilds
        self._store: _shmcore.FrameStore | None = None
        self._next = 0  # the generation to return next; 0: not positioned yet
        self._dropped = 0
        self._closed = False
        self._mu = threading.Lock()
        self._fork = _forks[0]
        try:
            self._attach()
        except NotFoundError:
            self._next = 1  # no store yet: every frame is new

    # -- position --

    def _own(self) -> None:
        """In a forked child, leave the parent's store handle and registry
        entry to the parent (they are its own: the kernel lock is shared
        with the inherited descriptor) and keep the position: the child
        attaches and registers anew on first use."""
        if self._fork != _forks[0]:
            self._fork = _forks[0]
            self._mu = threading.Lock()
            self._store = None
            self._entry = -1
            self._token = 0

    def _attach(self) -> _shmcore.FrameStore:
        """This subscription's own store handle (its pins and waits are its own)."""
        self._own()
        store = self._store
        if store is None:
            store = _shmcore.FrameStore.attach(self._image.native_key, user_key=self._image.key)
            with self._mu:
                if self._closed:
                    store.cancel_waits()
                self._store = store
            if self._next == 0:
                self._next = self._first(store)
            try:
                store = self._register(store)
            except BaseException:
                self._store = None  # registered nowhere: the next call tries again
                raise
        elif store.successor is not None:
            store = self._follow(store)
        return store

    def _follow(self, old: _shmcore.FrameStore) -> _shmcore.FrameStore:
        """Move to the store that replaced `old`: a lossless subscription
        adopts the entry the rebuild carried over (it held the writer back
        meanwhile) before it leaves its entry in `old`; a lossy one is
        listed anew. When registering fails, the subscription stays on
        `old`, registered nowhere: its next call tries again rather than
        going on unregistered."""
        entry, token = self._entry, self._token
        try:
            store = self._register(old.live)
        except BaseException:
            self._store, self._entry = old, -1
            self._leave(old, entry, token)  # and what rebuilds carried of it
            raise
        # Moved, not closed: a store that replaced the live one since
        # carries this subscription's entry, and must keep it.
        self._leave(old, entry, token, moved=True)
        return store

    def _leave(self, store: _shmcore.FrameStore, entry: int, token: int,
               moved: bool = False) -> None:
        if entry < 0:
            return
        if self._lossless:
            store.unsubscribe(entry, moved)
        else:
            store.leave_lossy(entry, token)

    def _register(self, store: _shmcore.FrameStore) -> _shmcore.FrameStore:
        """This subscription's entry in the live store: that store. A lossy
        one is only listed (status()), and goes unlisted when the registry
        is full or the segment's lock stays busy."""
        if not self._lossless:
            store, self._entry, self._token = store.subscribe_lossy(self._next)
            self._store = store
            return store
        try:
            store, self._entry, self._next, self._token = store.subscribe_lossless(
                self._next, self._token)
        except OutOfResourcesError as exc:
            self._entry = -1
            raise OutOfResourcesError(f"subscribe to {self._where}: {exc}") from None
        self._store = store
        return store

    def _first(self, store: _shmcore.FrameStore) -> int:
        newest = store.generation
        if self._start == "next":
            return newest + 1
        if self._start == "latest":
            return max(newest, 1)
        return max(newest - store.options["history"] + 1, 1)

    @property
    def dropped(self) -> int:
        """Frames this subscription never saw: overwritten before it took them."""
        return self._dropped

    # -- taking frames --

    def _take(self) -> Frame | None:
        """The next frame if the store has it now, else None."""
        try:
            got = self._attach().view_from(self._next, self._copy)
        except EndOfStream:
            raise EndOfStream(f"{self._where}: the writer ended the stream") from None
        if got is None:
            return None
        store, pixels, facts = got
        info = frame_info(facts, self._where)
        self._dropped += info.generation - self._next
        self._next = info.generation + 1
        if self._entry >= 0 and store is self._store:
            if self._lossless:
                store.advance(self._entry, self._next)
            elif not store.note_lossy(self._entry, self._token, self._next):
                store.leave_lossy(self._entry, self._token)  # a lossless one took it over
                self._entry = -1
        return Frame(pixels, info)

    def _check_open(self) -> None:
        self._own()
        if self._closed:
            raise NotAttachedError(f"subscription to {self._where}: closed")

    def next(self, timeout: float | None = None) -> Frame:
        """The next frame, blocking until there is one.

        Parameters
        ----------
        timeout
            Seconds; None waits as long as it takes.

        Returns
        -------
        Frame
            Zero-copy and pinned while referenced, or a private copy when
            the subscription was made with ``copy=True``.

        Raises
        ------
        TimeoutError
            No frame within `timeout`.
        EndOfStream
            The writer ended the stream and every kept frame was returned.
        NotAttachedError
            The subscription was closed (from another thread too).

        Examples
        --------
        >>> import numpy as np, shmimage
        >>> with shmimage.SharedImage("docs-next") as img:
        ...     sub = img.subscribe(start="next")
        ...     _ = img.publish(np.ones((2, 2), np.uint8))
        ...     frame = sub.next(timeout=1.0)
        ...     frame.info.generation, frame.pixels.flags.writeable
        ...     del frame; sub.close()
        (1, False)
        """
        self._check_open()
        try:
            frame = self._take()
        except NotFoundError:
            frame = None
        if frame is not None:  # the common case in a stream: no clock, no wait
            return frame
        deadline = None if timeout is None else time.monotonic() + max(float(timeout), 0.0)
        while True:
            self._check_open()
            try:
                frame = self._take()
            except NotFoundError:
                self._image.wait(time_left(deadline), after=0)
                continue
            if frame is not None:
                return frame
            if not self._attach().wait_from(self._next, time_left(deadline)):
                raise TimeoutError(f"no frame from {self._where} within the timeout")

    async def next_async(self, timeout: float | None = None) -> Frame:
        """As `next`, without blocking the event loop.

        The process's one waiter thread sleeps in the kernel for every
        pending call and wakes this coroutine's loop; the frame is taken in
        the loop's thread, so a cancelled call consumes no frame.

        Parameters
        ----------
        timeout
            Seconds; None waits as long as it takes.

        Returns
        -------
        Frame

        Raises
        ------
        TimeoutError, EndOfStream, NotAttachedError
            As for `next`.

        Examples
        --------
        >>> import asyncio, numpy as np, shmimage
        >>> async def first_frame(img):
        ...     with img.subscribe(start="latest") as sub:
        ...         frame = await sub.next_async(timeout=1.0)
        ...         return frame.info.generation
        >>> with shmimage.SharedImage("docs-next-async") as img:
        ...     _ = img.publish(np.zeros((2, 2), np.uint8))
        ...     asyncio.run(first_frame(img))
        1
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(float(timeout), 0.0)
        while True:
            self._check_open()
            try:
                frame = self._take()
            except NotFoundError:
                frame = None  # no store yet: look again every 20 ms
                await asyncio.sleep(0.02)
            if frame is not None:
                return frame
            if self._store is None:
                if deadline is not None and loop.time() >= deadline:
                    raise TimeoutError(f"no frame from {self._where} within the timeout")
                continue
            wait = Wait(self._store, self._next, loop, loop.create_future())
            WAITER.add(wait)
            try:
                left = None if deadline is None else max(deadline - loop.time(), 0.0)
                await asyncio.wait_for(wait.future, left)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no frame from {self._where} within the timeout") from None
            finally:
                WAITER.discard(wait)

    def close(self) -> None:
        """Stop: a `next()` blocked in another thread raises `NotAttachedError`.
        Frames already returned stay valid while referenced.

        Examples
        --------
        >>> import shmimage
        >>> sub = shmimage.SharedImage("docs-close").subscribe(lossless=True)
        >>> sub.close()
        >>> sub.closed
        True
        """
        self._own()
        with self._mu:
            self._closed = True
            store, self._store = self._store, None
            entry, self._entry = self._entry, -1
        if store is not None:
            self._leave(store, entry, self._token)
            store.cancel_waits()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    # -- protocols --

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        try:
            return self.next()
        except EndOfStream:
            raise StopIteration from None
        except NotAttachedError:
            if self._closed:
                raise StopIteration from None
            raise

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.next_async()
        except EndOfStream:
            raise StopAsyncIteration from None
        except NotAttachedError:
            if self._closed:
                raise StopAsyncIteration from None
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()

    def __reduce__(self) -> Any:
        raise TypeError("a Subscription does not pickle: subscribe in the receiving process")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"next={self._next}"
        mode = "lossless" if self._lossless else "lossy"
        return f"<Subscription {self._where} {mode} {state} dropped={self._dropped}>"
