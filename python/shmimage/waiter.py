"""One thread per process that waits for frames on behalf of every pending
`Subscription.next_async`, waking each one's event loop.

A coroutine never blocks its loop and no thread is parked per waiting call:
the waiter sleeps in the kernel (futex) on the store of the wait it serves,
at most `SLICE` seconds at a time, so that a wait added or cancelled
meanwhile is seen that soon. It stops as soon as nothing is pending, so a
cancelled wait leaves no thread behind for long and nothing that delays the
interpreter's exit (it is a daemon thread).
"""
from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from . import _shmcore

SLICE = 0.01  # seconds per futex wait while other waits are pending


class Wait:
    """One pending `next_async`: resolve `future` once `want` can be taken."""

    __slots__ = ("future", "loop", "store", "want")

    def __init__(self, store: _shmcore.FrameStore, want: int, loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[Any]) -> None:
        self.store = store
        self.want = want
        self.loop = loop
        self.future = future


def _settle(future: asyncio.Future[Any], outcome: bool | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class Waiter:
    """The process's shared waiter thread and the waits it serves."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._pending: list[Wait] = []
        self._thread: threading.Thread | None = None
        self._ended: threading.Thread | None = None  # the last one, until it is gone

    def _forget(self) -> None:
        """In a forked child: the parent's thread and waits are not here."""
        self._mu = threading.Lock()
        self._pending = []
        self._thread = None
        self._ended = None

    def add(self, wait: Wait) -> None:
        with self._mu:
            self._pending.append(wait)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shmimage-waiter",
                                                daemon=True)
                self._thread.start()

    def discard(self, wait: Wait) -> None:
        with self._mu:
            if wait in self._pending:
                self._pending.remove(wait)

    @property
    def running(self) -> bool:
        """Whether the thread is alive (tests watch it stop): one that has
        left its loop still runs until its function has returned."""
        with self._mu:
            ended = self._ended
            if self._thread is not None:
                return True
        return ended is not None and ended.is_alive()

    def _run(self) -> None:
        while True:
            with self._mu:
                pending = list(self._pending)
                if not pending:
                    self._ended, self._thread = self._thread, None
                    return
            for i, wait in enumerate(pending):
                # The first waits a slice in the kernel; the rest are looked at.
                outcome = self._look(wait, SLICE if i == 0 else 0.0)
                if outcome is not False:
                    self.discard(wait)
                    try:
                        wait.loop.call_soon_threadsafe(_settle, wait.future, outcome)
                    except RuntimeError:  # its loop is closed: nobody waits any more
                        pass

    @staticmethod
    def _look(wait: Wait, timeout: float) -> bool | BaseException:
        if wait.future.done():  # cancelled or timed out: drop it
            return True
        try:
            return wait.store.wait_from(wait.want, timeout)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting coroutine
            return exc


WAITER = Waiter()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WAITER._forget)
