"""Spawned reader processes, kept alive across repetitions.

Control messages are pickled tuples answered by ``("ok", value)`` or
``("error", traceback)``. While a round trip runs, the hot path uses raw
bytes: the writer sends a message (``GO``, or the payload itself for the
pickle baseline), the reader does its step and answers ``ACK``.
"""
from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import signal
import traceback
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from . import placement

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

GO = b"g"
ACK = b"a"
STOP = b"s"
FAILED = b"e"
#: Seconds to wait for any answer from a reader before declaring it stuck.
TIMEOUT = 120.0
JOIN_TIMEOUT = 10.0

_shared_lock: Any = None


class ReaderError(RuntimeError):
    """A reader process died or stopped answering: its Pipe may be out of step."""


class ReaderFailed(ReaderError):
    """A reader reported an exception; its Pipe is still in step and it can go on."""


def shared_lock() -> Any:
    """The ``multiprocessing.Lock`` shared by the writer and every reader.

    Such locks can only be handed over at spawn time, so the pool makes one.
    """
    if _shared_lock is None:
        raise RuntimeError("no shared lock: not inside a ReaderPool")
    return _shared_lock


def load_role(path: str) -> type:
    module, _, name = path.partition(":")
    role: type = getattr(importlib.import_module(module), name)
    return role


def serve(conn: Connection, lock: Any) -> None:
    """A reader process's main loop (module level, so spawn can find it).

    It ends when the writer closes its end of the Pipe (or dies). Ctrl+C is
    the writer's to handle: it then closes the Pipes.
    """
    global _shared_lock
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _shared_lock = lock
    role: Any = None
    try:
        while True:
            command, *args = conn.recv()
            if command == "steps":
                conn.send(("ok", None))
                _step_loop(conn, role)
                continue
            try:
                result, role = _control(command, args, role, conn)
            except Exception:  # noqa: BLE001 - any failure goes back to the writer
                conn.send(("error", traceback.format_exc()))
            else:
                conn.send(("ok", result))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        if role is not None:
            role.close()


def _control(command: str, args: list[Any], role: Any, conn: Connection) -> tuple[Any, Any]:
    """Runs one control command; returns its result and the (new) role."""
    if command == "setup":
        return None, load_role(args[0])(**args[1])
    if command == "call":
        return getattr(role, args[0])(conn, *args[1]), role
    if command == "pin":
        return placement.pin(args[0]), role
    if command == "teardown":
        if role is not None:
            role.close()
        return None, None
    raise ValueError(f"unknown command {command!r}")


def _step_loop(conn: Connection, role: Any) -> None:
    while True:
        message = conn.recv_bytes()
        if message == STOP:
            return
        try:
            role.step(message)
        except Exception:  # noqa: BLE001 - any failure goes back to the writer
            conn.send_bytes(FAILED + traceback.format_exc().encode())
        else:
            conn.send_bytes(ACK)


def expect_ack(conn: Connection, timeout: float = TIMEOUT) -> None:
    if not conn.poll(timeout):
        raise ReaderError(f"no answer from a reader within {timeout:g} s")
    try:
        answer = conn.recv_bytes()
    except EOFError as exc:
        raise ReaderError("a reader process died") from exc
    if answer != ACK:
        raise ReaderFailed(answer[len(FAILED):].decode(errors="replace"))


class Reader:
    """The writer's handle on one spawned reader process."""

    def __init__(self, ctx: Any, lock: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, lock), daemon=True)
        self.process.start()
        child.close()

    def request(self, *message: Any, timeout: float = TIMEOUT) -> Any:
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ReaderError("a reader process died") from exc
        return self.reply(timeout)

    def reply(self, timeout: float = TIMEOUT) -> Any:
        if not self.conn.poll(timeout):
            raise ReaderError(f"reader {self.process.pid} did not answer within {timeout:g} s")
        try:
            status, value = self.conn.recv()
        except EOFError as exc:
            raise ReaderError(f"reader {self.process.pid} died") from exc
        if status == "error":
            raise ReaderFailed(value)
        return value

    def setup(self, role: str, args: dict[str, Any]) -> None:
        self.request("setup", role, args)

    def teardown(self) -> None:
        self.request("teardown")

    def pin(self, cpus: set[int]) -> set[int]:
        """Restrict the reader process to ``cpus``; returns what it was allowed before."""
        before: set[int] = self.request("pin", cpus)
        return before

    def start_steps(self) -> None:
        self.request("steps")

    def stop_steps(self) -> None:
        try:
            self.conn.send_bytes(STOP)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        """Closing the Pipe ends the reader, whatever it was waiting for."""
        self.conn.close()
        self.process.join(timeout=JOIN_TIMEOUT)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=JOIN_TIMEOUT)


@contextlib.contextmanager
def playing(readers: Sequence[Reader], role: str, args: dict[str, Any]) -> Iterator[None]:
    """The readers set up as ``role`` for the block, torn down after it.

    After an interruption or a dead reader their Pipes may hold answers
    nobody read: they are then left for the caller to close, not torn down.
    """
    ready: list[Reader] = []
    try:
        for reader in readers:
            reader.setup(role, args)
            ready.append(reader)
        yield
    except ReaderFailed:
        for reader in ready:
            reader.teardown()
        raise
    for reader in ready:
        reader.teardown()


class ReaderPool:
    """``n`` spawned readers sharing one ``multiprocessing.Lock`` with the writer."""

    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.lock = ctx.Lock()
        self.readers: list[Reader] = []
        try:
            for _ in range(n):
                self.readers.append(Reader(ctx, self.lock))
        except BaseException:
            self.close()
            raise
        global _shared_lock
        _shared_lock = self.lock

    def close(self) -> None:
        global _shared_lock
        for reader in self.readers:
            reader.close()
        self.readers = []
        _shared_lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> bool | None:
        self.close()
        return None
