"""Children for the shmimage.net tests: a server or relay driven over a pipe, and helpers.

A driven child answers the pipe's commands: "stats" -> its counters (plus
its RSS in KiB), "stop" -> stops, answers its final counters and exits.
Its first message is its endpoint (server) or "ready" (relay).
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

import numpy as np

TIMEOUT = 30.0


def rss_kib(pid: int | None = None) -> int:
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _drive(runner: Any, conn: Any, first: Callable[[], Any]) -> None:
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    conn.send(first())
    while True:
        if not conn.poll(0.2):
            if not thread.is_alive():
                conn.send({"died": True, **runner.stats.snapshot()})
                return
            continue
        command = conn.recv()
        if command == "stop":
            runner.stop()
            thread.join(TIMEOUT)
            conn.send({"alive": thread.is_alive(), **runner.stats.snapshot()})
            return
        facts = {"rss_kib": rss_kib(), "connected": getattr(runner, "connected", None)
                 and runner.connected.is_set(), **runner.stats.snapshot()}
        conn.send(facts)


def serve_child(conn: Any, key: str, bind: str, options: dict[str, Any]) -> None:
    from shmimage.net import Server

    server = Server(key, bind, **options)

    def endpoint() -> str | None:
        server.ready.wait(TIMEOUT)
        return server.endpoint

    _drive(server, conn, endpoint)


def relay_child(conn: Any, connect: str, key: str | None, options: dict[str, Any]) -> None:
    from shmimage.net import Relay

    _drive(Relay(connect, key, **options), conn, lambda: "ready")


class Driven:
    """The test's end of a driven child."""

    def __init__(self, procs: Any, target: Callable[..., None], *args: Any) -> None:
        import multiprocessing

        self.conn, child = multiprocessing.get_context("spawn").Pipe()
        self.proc = procs.start(target, child, *args)
        if not self.conn.poll(TIMEOUT):
            raise TimeoutError("the child did not start")
        self.first = self.conn.recv()

    def ask(self, command: str = "stats") -> dict[str, Any]:
        self.conn.send(command)
        if not self.conn.poll(TIMEOUT):
            raise TimeoutError(f"no answer to {command!r}")
        answer: dict[str, Any] = self.conn.recv()
        return answer

    def stop(self) -> dict[str, Any]:
        answer = self.ask("stop")
        self.proc.join(TIMEOUT)
        return answer

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool],
                 timeout: float = TIMEOUT) -> dict[str, Any]:
        """Poll the child's counters until ``predicate`` holds; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            facts = self.ask()
            if predicate(facts):
                return facts
            if time.monotonic() > deadline:
                raise AssertionError(f"never true within {timeout} s: {facts}")
            time.sleep(0.05)


def indexed(index: int, shape: tuple[int, ...] = (24, 32), dtype: Any = np.uint32) -> np.ndarray:
    """A frame whose every pixel holds its index."""
    return np.full(shape, index, dtype)


def wait_for_value(image: Any, value: int, timeout: float = TIMEOUT) -> np.ndarray:
    """Wait until the key's latest frame is all ``value``; that frame."""
    from shmimage import NoFrameError, NotFoundError

    deadline = time.monotonic() + timeout
    while True:
        try:
            frame = image.read()
            if frame.flat[0] == value:
                return frame
            image.wait(timeout=0.2)
        except (NotFoundError, NoFrameError, TimeoutError):
            time.sleep(0.02)
        if time.monotonic() > deadline:
            raise AssertionError(f"the frame never became {value}")


def consume_until(key: str, last: int, timeout: float) -> None:
    """A consumer for the namespace test: prints "frame VALUE PID WRITER_PID" for each
    new frame (every pixel checked to hold VALUE) until VALUE is ``last``."""
    from shmimage import NoFrameError, NotFoundError, SharedImage

    deadline = time.monotonic() + timeout
    after, value = 0, None
    with SharedImage(key) as image:
        while value != last and time.monotonic() < deadline:
            try:
                after = image.wait(timeout=0.5, after=after)
                frame = image.read()
                writer = image.info().writer_pid
            except (TimeoutError, NotFoundError, NoFrameError):
                continue
            if int(frame.flat[0]) != value and (frame == frame.flat[0]).all():
                value = int(frame.flat[0])
                print("frame", value, os.getpid(), writer, flush=True)


def blocking(kind: str, results: Any, *args: Any) -> None:
    """``shmimage.net.serve`` or ``relay`` as a program calls them: returns on a signal."""
    from shmimage import net

    stats = (net.serve if kind == "serve" else net.relay)(*args)
    results.put((kind, stats.snapshot()))


def frame_of(index: int, shape: tuple[int, ...] = (120, 160, 3)) -> np.ndarray:
    """A uint8 frame for index ``index`` (its pixels hold ``index % 256``; the
    index itself travels in the meta as ``{"i": index}``)."""
    return np.full(shape, index % 256, np.uint8)


def consume_every(conn: Any, key: str, last: int, slow: float, stall: bool) -> None:
    """A relay-side consumer: a lossless subscription of ``key`` from its current
    frame. Says "ready"; with ``stall`` takes nothing until told "go"; then takes
    frames until meta index ``last``, sleeping up to ``slow`` s between them.
    Sends ("ok", [(meta index, pixels all index % 256)], dropped) or ("error", text)."""
    import random

    from shmimage import SharedImage

    rng = random.Random()
    got: list[tuple[int, bool]] = []
    try:
        with SharedImage(key) as image, image.subscribe(lossless=True, start="latest") as sub:
            conn.send("ready")
            if stall and not (conn.poll(TIMEOUT) and conn.recv() == "go"):
                raise TimeoutError("never told to go")
            index = -1
            while index != last:
                frame = sub.next(timeout=TIMEOUT)
                index = int(frame.info.meta["i"])
                got.append((index, bool((frame.pixels == index % 256).all())))
                del frame
                if slow:
                    time.sleep(rng.uniform(0, slow))
            conn.send(("ok", got, sub.dropped))
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        conn.send(("error", f"{type(exc).__name__}: {exc} after {got[-3:]}"))


def consume_every_printed(key: str, last: int, timeout: float) -> None:
    """A lossless consumer for the namespace test: once the key has a frame, a
    lossless subscription from it; prints "frame INDEX PID WRITER_PID" for each
    frame whose every pixel holds its meta index (else "bad ..."), until INDEX is
    ``last``."""
    from shmimage import NoFrameError, NotFoundError, SharedImage

    deadline = time.monotonic() + timeout
    with SharedImage(key) as image:
        while time.monotonic() < deadline:
            try:
                image.wait(timeout=0.5, after=0)
                break
            except (TimeoutError, NotFoundError, NoFrameError):
                continue
        with image.subscribe(lossless=True, start="latest") as sub:
            index = -1
            while index != last:
                frame = sub.next(timeout=max(deadline - time.monotonic(), 0.0))
                index = int(frame.info.meta.get("i", -1))
                good = bool((frame.pixels == index).all())
                print("frame" if good else "bad", index, os.getpid(), frame.info.writer_pid,
                      flush=True)
                del frame
