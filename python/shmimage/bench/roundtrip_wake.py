"""Round trips by each system's own wake-ups, every method interleaved run by run.

One reader process hosts the reader side of every method (:class:`Roles`).
A run of a method is ``exchanges`` round trips back to back: the writer's
``exchange()`` (publish, then wait for the reader's ack by the method's own
means), the reader's ``pong()`` (wait, take the frame, ack). Each run gives
the wall time per trip and the CPU time per trip of both processes together
(user + system, every thread), so a method that spins while it waits shows
it. Runs of all methods alternate, in a rotating order, so a slow spell of a
shared machine hits them alike and run ``i`` of one method pairs with run
``i`` of another.
"""
from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from . import interrupt
from .pool import Reader, ReaderError, load_role, playing
from .roundtrip import Writer

READY = b"r"
#: Seconds to wait for the reader to get ready for a run.
READY_TIMEOUT = 30.0


class Roles:
    """Reader side: every method's reader, built once; a method that fails to build is
    reported by ``failed`` and left out, the others go on."""

    def __init__(self, roles: dict[str, tuple[str, dict[str, Any]]]) -> None:
        self.roles: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        for name, (path, args) in roles.items():
            try:
                self.roles[name] = load_role(path)(**args)
            except Exception as exc:  # noqa: BLE001 - reported per method
                self.errors[name] = f"{type(exc).__name__}: {exc}".strip()
                traceback.clear_frames(exc.__traceback__)

    def failed(self, conn: Connection) -> dict[str, str]:
        return dict(self.errors)

    def serve(self, conn: Connection, name: str, n: int) -> int:
        """Answer ``n`` round trips of method ``name``; returns the CPU nanoseconds spent."""
        role = self.roles[name]
        role.arm()
        conn.send_bytes(READY)
        start = time.process_time_ns()
        for _ in range(n):
            role.pong()
        return time.process_time_ns() - start

    def close(self) -> None:
        for role in self.roles.values():
            role.close()
        self.roles = {}


@dataclasses.dataclass
class WakeRuns:
    """Per method: wall seconds per trip and CPU seconds per trip, one value per run."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    #: Methods whose reader side could not be built, with the reason.
    failed: dict[str, str]


def _one_run(reader: Reader, name: str, writer: Writer, n: int) -> tuple[float, float]:
    reader.conn.send(("call", "serve", (name, n)))
    if not reader.conn.poll(READY_TIMEOUT) or reader.conn.recv_bytes() != READY:
        raise ReaderError(f"the reader of {name} did not get ready")
    cpu = time.process_time_ns()
    start = time.perf_counter_ns()
    for _ in range(n):
        writer.exchange()
    wall = time.perf_counter_ns() - start
    cpu = time.process_time_ns() - cpu
    cpu += reader.reply()
    return wall / n / 1e9, cpu / n / 1e9


def interleaved(reader: Reader, writers: dict[str, Writer], warmup: int, runs: int,
                exchanges: int | Mapping[str, int]) -> WakeRuns:
    """``warmup`` uncounted and ``runs`` counted runs of every method, alternating;
    a run is ``exchanges`` round trips (or ``exchanges[name]`` for method ``name``)."""
    trips = {name: exchanges if isinstance(exchanges, int) else exchanges[name]
             for name in writers}
    roles = {name: (w.reader_role, w.reader_args()) for name, w in writers.items()}
    with playing([reader], f"{__name__}:Roles", {"roles": roles}):
        failed = reader.request("call", "failed", ())
        names = [name for name in writers if name not in failed]
        got = WakeRuns({n: [] for n in names}, {n: [] for n in names}, failed)
        for i in range(warmup + runs):
            for name in _rotated(names, i):
                wall, cpu = _one_run(reader, name, writers[name], trips[name])
                if i >= warmup:
                    got.wall[name].append(wall)
                    got.cpu[name].append(cpu)
            interrupt.check()
    return got


def _rotated(names: Sequence[str], i: int) -> list[str]:
    """A different method first in each run: none always follows the same one."""
    k = i % len(names) if names else 0
    return list(names[k:]) + list(names[:k])
