"""The round trip of the specification, for any method.

The writer publishes, signals each reader over its ``multiprocessing.Pipe``,
every reader does its step (a copy out, or a view touching one pixel) and acks
over the Pipe. A figure is the median time of that whole exchange.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable

from .pool import GO, Reader, ReaderFailed, expect_ack, playing
from .timing import timed_bracketed, timed_runs

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11


class Writer:
    """The writer side of one method. Subclasses set the reader role and publish."""

    #: ``"module:Class"`` of the reader side, built in each reader process.
    reader_role = ""

    def reader_args(self) -> dict[str, Any]:
        return {}

    def publish(self) -> None:
        raise NotImplementedError

    def message(self) -> bytes:
        """What signals the readers (the pickle baseline sends the frame itself)."""
        return GO

    def prime(self, readers: Sequence[Reader]) -> None:
        """Make sure the readers are connected before the first run (set up, not stepping)."""

    def exchange(self) -> None:
        """One round trip by the method's own wake-ups (publish, the reader acks by them)."""
        raise NotImplementedError(f"{type(self).__name__} has no wake-ups of its own")

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exchange(writer: Writer, readers: Sequence[Reader]) -> Callable[[], None]:
    """One round trip: publish, signal every reader, wait for every ack."""
    conns = [reader.conn for reader in readers]

    def once() -> None:
        writer.publish()
        message = writer.message()
        for conn in conns:
            conn.send_bytes(message)
        for conn in conns:
            expect_ack(conn)

    return once


@contextlib.contextmanager
def stepping(writer: Writer, readers: Sequence[Reader]) -> Iterator[None]:
    """The readers set up for ``writer`` and answering its messages, for the block."""
    with playing(readers, writer.reader_role, writer.reader_args()):
        writer.prime(readers)
        for reader in readers:
            reader.start_steps()
        try:
            yield
        except ReaderFailed:
            _stop(readers)
            raise
        _stop(readers)


def _stop(readers: Sequence[Reader]) -> None:
    for reader in readers:
        reader.stop_steps()


def round_trip(writer: Writer, readers: Sequence[Reader], warmup: int, runs: int,
               baseline: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Seconds of each round trip (``"rt"``) and of a ``baseline`` bracketing them."""
    with stepping(writer, readers):
        once = exchange(writer, readers)
        if baseline is None:
            return {"rt": timed_runs(once, warmup, runs)}
        trips, base = timed_bracketed(once, baseline, warmup, runs)
        return {"rt": trips, "baseline": base}
