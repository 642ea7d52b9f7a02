"""Across hosts: frames per second over loopback TCP, sustained.

shmimage: a producer fills each frame in a ``loan()``; ``serve`` sends it
(zero-copy, 2 frames in flight per relay); ``relay`` receives it straight into
a ``loan()`` of its own key; a consumer process on the relay's key ``view()``s
each frame (lossless: through a lossless subscription, every frame; lossy:
the newest after each wake-up). Baselines in the same run: raw pyzmq
streaming the same frames with the same in-flight window (ROUTER/DEALER,
credits, ``copy=False`` sends, ``recv_into`` a kept array), and imagezmq's
``ImageSender``/``ImageHub`` (REQ/REP). Every sender writes the whole frame
before it sends it, as a camera would.

Each method streams without a pause for ``Plan.seconds`` at a time, every
method in turn, ``Plan.turns`` times; a sample is the rate its consumer got
frames at in one slice of that time. The lossy
producer is paced a quarter faster than the raw pyzmq rate of the same run:
fast enough that frames are skipped, without spinning on a core the link
needs (the machine may have two).

shmimage and raw pyzmq copy a frame four times: the sender's write, the
kernel's two socket copies, and one out of the message ZeroMQ received into
(raw pyzmq ``recv_into`` a kept array, the relay's ``recv_into`` a ``loan()``,
so that the frame is in shared memory for every local reader); the server
sends from the pinned frame and the consumers only look. imagezmq copies it
three times: its hub's ``recv_image`` looks at the message ZeroMQ received
into (``copy=False``). A lossy producer also writes the frames that are
skipped. On a busy machine a
method's rate follows the CPU share its processes get (shmimage runs four,
the baselines two), so the ratios are only as steady as the machine's load.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import socket
import threading
import time
from typing import Any, Callable

import numpy as np

from . import interrupt
from .frames import make_frame, parse_size, unique_name

SIZE = "1920x1080"
WINDOW = 2            # frames in flight: the relay's credits, and raw pyzmq's
LOSSY_PACE = 1.25     # the lossy producer's rate, against the raw pyzmq rate
START_SECONDS = 60.0  # a method's processes must stream within this
POLL = 0.1            # seconds between looks at the stop flag
POLL_MS = 100
REPLY_SECONDS = 5.0   # an imagezmq sender without a reply this long: the hub is gone
DRAIN_SECONDS = 0.1   # after a method's turn: what it has in flight arrives
RAW, IMAGEZMQ = "raw pyzmq", "imagezmq REQ/REP"
LOSSLESS, LOSSY = "shmimage lossless", "shmimage lossy"
#: Sample keys: ``net/<method>``, in frames per second, one per slice.
KEY = "net/"


def compressed(codec: str) -> str:
    return f"shmimage lossy {codec}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """How long each method streams without a pause (``seconds``, after ``warmup``),
    how many turns every method takes, the seconds per sample (``slice``), and
    which compressions are reported."""

    seconds: float
    warmup: float
    turns: int
    codecs: tuple[str, ...]
    slice: float = 0.1

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:  # 16 samples: the quick minimum is 15
            return cls(0.8, 0.2, 1, (), slice=0.05)
        return cls(10.0, 1.0, 2, tuple(c for c in ("lz4", "zstd") if _has_codec(c)))


def _has_codec(name: str) -> bool:
    try:
        from ..net.codecs import parse_codec

        parse_codec(name)
    except (ImportError, ValueError):
        return False
    return True


def keys(plan: Plan) -> tuple[str, ...]:
    methods = (RAW, LOSSLESS, LOSSY, IMAGEZMQ, *map(compressed, plan.codecs))
    return tuple(KEY + m for m in methods)


Child = Callable[..., None]


@dataclasses.dataclass
class _Method:
    """One way of streaming: its processes (the consumer last) and its flags."""

    name: str
    jobs: list[tuple[Child, tuple[Any, ...]]]
    segments: tuple[str, ...] = ()
    flags: _Flags | None = None
    samples: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None


@dataclasses.dataclass
class _Flags:
    """What a method's processes share with the suite."""

    name: str
    port: int
    stop: Any     # every process ends
    go: Any       # the producer sends while set
    ready: Any    # the consumer has had a frame
    frames: Any   # frames the consumer has had (a shared counter)
    errors: Any   # a queue of (method, text)
    pace: Any     # frames per second for a paced producer (0: as fast as it can)


def measure(plan: Plan, skipped: dict[str, str],
            fail: Callable[[str, str], None]) -> dict[str, list[float]]:
    """Frames per second in each slice of each method's sustained stream, by key.

    Every method's processes start at once and wait; then each method in turn
    streams for ``plan.seconds`` after its warm-up while the others are idle.
    A method that fails is reported through ``fail(key, reason)``.
    """
    ctx = multiprocessing.get_context("spawn")
    stop, errors, pace = ctx.Event(), ctx.Queue(), ctx.RawValue("d", 0.0)
    up = ctx.Semaphore(0)
    methods = _methods(plan, skipped)
    procs = []
    try:
        for method in methods:
            method.flags = _Flags(method.name, _free_port(), stop, ctx.Event(), ctx.Event(),
                                  ctx.RawValue("q", 0), errors, pace)
            for fn, args in method.jobs:
                procs.append(ctx.Process(target=_child, args=(fn, method.flags, up, *args),
                                         daemon=True))
                procs[-1].start()
        _started(up, len(procs))
        for _ in range(plan.turns):  # turns: a busy spell of the machine hits all alike
            for method in methods:
                _count(method, plan, methods)
                if method.name == RAW and method.samples:
                    pace.value = float(np.median(method.samples)) * LOSSY_PACE
    finally:
        stop.set()
        _end(procs)
        for method in methods:
            _remove(*method.segments)
    _errors(errors, methods)
    for method in methods:
        if method.error or not method.samples:
            fail(KEY + method.name, method.error or "not measured")
    return {KEY + m.name: m.samples for m in methods if m.samples and not m.error}


def _methods(plan: Plan, skipped: dict[str, str]) -> list[_Method]:
    shape = (*parse_size(SIZE), 4)
    methods = [_Method(RAW, [(_raw_sender, (shape,)), (_raw_receiver, (shape,))]),
               _shmimage(LOSSLESS, shape, lossless=True), _shmimage(LOSSY, shape)]
    if "imagezmq" not in skipped:
        methods.append(_Method(IMAGEZMQ, [(_imagezmq_sender, (shape,)), (_imagezmq_hub, ())]))
    return methods + [_shmimage(compressed(c), shape, compress=c) for c in plan.codecs]


def _shmimage(name: str, shape: tuple[int, ...], *, lossless: bool = False,
              compress: str | None = None) -> _Method:
    src, dst = unique_name("n"), unique_name("r")
    return _Method(name, [
        (_producer, (src, shape, not lossless)),
        (_server, (src, {"lossless": lossless, "compress": compress})),
        (_relay, (dst, {"lossless": lossless, "window": WINDOW})),
        (_viewer, (dst, lossless))], segments=(src, dst))


def _count(method: _Method, plan: Plan, methods: list[_Method]) -> None:
    """Let ``method`` stream: its first frame, the warm-up, then a sample per slice."""
    flags = method.flags
    if flags is None or method.error:
        return
    flags.go.set()
    try:
        deadline = time.monotonic() + START_SECONDS
        while not flags.ready.wait(POLL):
            interrupt.check()
            _errors(flags.errors, methods)
            if method.error:
                return
            if time.monotonic() > deadline:
                method.error = f"no frame within {START_SECONDS:g} s"
                return
        time.sleep(plan.warmup)
        count, at = flags.frames.value, time.monotonic()
        for _ in range(max(round(plan.seconds / plan.slice), 1)):
            interrupt.check()  # a stop asked for: the caller's finally ends every process
            time.sleep(plan.slice)
            now_count, now = flags.frames.value, time.monotonic()
            method.samples.append((now_count - count) / (now - at))
            count, at = now_count, now
    finally:
        flags.go.clear()
        time.sleep(DRAIN_SECONDS)  # what is in flight arrives before the next one starts


def _started(up: Any, count: int) -> None:
    """Wait until every process has its imports (start-up must not load the count)."""
    deadline = time.monotonic() + START_SECONDS
    while count and time.monotonic() < deadline:  # else: a method that cannot start says so
        interrupt.check()
        if up.acquire(timeout=POLL):
            count -= 1


def _errors(errors: Any, methods: list[_Method]) -> None:
    while True:
        try:
            name, text = errors.get_nowait()
        except queue.Empty:
            return
        for method in methods:
            if method.name == name and method.error is None:
                method.error = text


def _end(procs: list[Any]) -> None:
    for proc in procs:
        proc.join(10)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(10)


def _child(fn: Child, flags: _Flags, up: Any, *args: Any) -> None:
    try:
        import zmq  # noqa: F401 - imported before the count starts, not during it

        from .. import net  # noqa: F401
    finally:
        up.release()
    try:
        fn(flags, *args)
    except Exception as exc:  # noqa: BLE001 - reported to the suite, which records it
        flags.errors.put((flags.name, f"{fn.__name__.strip('_')}: {type(exc).__name__}: {exc}"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _remove(*names: str) -> None:
    """Segments of a run whose processes had to be killed."""
    from ..errors import NotFoundError
    from ..memory import SharedMemory

    for name in names:
        try:
            SharedMemory.remove(name)
        except NotFoundError:
            pass


def _got(flags: _Flags, pixels: np.ndarray) -> int:
    """A frame arrived: its first pixel (the consumer looks at it)."""
    flags.frames.value += 1
    if not flags.ready.is_set():
        flags.ready.set()
    return int(pixels.flat[0])


def _frame(shape: tuple[int, ...]) -> np.ndarray:
    return make_frame(shape[0], shape[1])


def _sending(flags: _Flags) -> bool:
    """Wait while the gate is shut; False once the run ends."""
    while not flags.stop.is_set():
        if flags.go.wait(POLL):
            return True
    return False


# -- shmimage ----------------------------------------------------------------------------

def _producer(flags: _Flags, key: str, shape: tuple[int, ...], paced: bool) -> None:
    from .. import SharedImage

    base = _frame(shape)
    due = time.monotonic()
    with SharedImage(key) as image:
        index = 0
        while _sending(flags):
            try:
                with image.loan(shape, np.uint8, timeout=POLL) as out:
                    np.copyto(out, base)
                    out[0, 0, 0] = index % 256
            except TimeoutError:
                continue  # held back by a lossless relay: look at the flags
            index += 1
            if paced and flags.pace.value > 0:
                period = 1.0 / flags.pace.value
                due = max(due + period, time.monotonic() - period)
                time.sleep(max(due - time.monotonic(), 0.0))


def _server(flags: _Flags, key: str, options: dict[str, Any]) -> None:
    from ..net import Server

    _run_until(Server(key, f"tcp://127.0.0.1:{flags.port}", **options), flags.stop)


def _relay(flags: _Flags, key: str, options: dict[str, Any]) -> None:
    from ..net import Relay

    _run_until(Relay(f"tcp://127.0.0.1:{flags.port}", key, **options), flags.stop)


def _run_until(runner: Any, stop: Any) -> None:
    thread = threading.Thread(target=runner.run)
    thread.start()
    while not stop.wait(POLL) and thread.is_alive():
        pass
    runner.stop()
    thread.join()


def _viewer(flags: _Flags, key: str, lossless: bool) -> None:
    from .. import SharedImage

    with SharedImage(key) as image:
        if lossless:
            with image.subscribe(lossless=True) as sub:
                while not flags.stop.is_set():
                    try:
                        frame = sub.next(timeout=POLL)
                    except TimeoutError:
                        continue
                    _got(flags, frame.pixels)
                    del frame
            return
        after = 0
        while not flags.stop.is_set():
            try:
                after = image.wait(timeout=POLL, after=after)
            except TimeoutError:
                continue
            with image.view() as pixels:
                _got(flags, pixels)


# -- raw pyzmq ---------------------------------------------------------------------------

def _raw_sender(flags: _Flags, shape: tuple[int, ...]) -> None:
    import zmq

    base = _frame(shape)
    frames = [np.empty_like(base) for _ in range(WINDOW + 1)]  # none rewritten in flight
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(f"tcp://127.0.0.1:{flags.port}")
    credits: dict[bytes, int] = {}
    index = 0
    try:
        while not flags.stop.is_set():
            if sock.poll(0 if any(credits.values()) and flags.go.is_set() else POLL_MS):
                ident, message = sock.recv_multipart()
                credits[ident] = credits.get(ident, 0) + int(message)
            if not flags.go.is_set():
                continue
            for ident, credit in credits.items():
                for _ in range(credit):
                    frame = frames[index % len(frames)]
                    np.copyto(frame, base)
                    frame[0, 0, 0] = index % 256
                    sock.send_multipart([ident, b"%d" % index, frame.data], copy=False)
                    index += 1
                credits[ident] = 0
    finally:
        sock.close(0)
        context.term()


def _raw_receiver(flags: _Flags, shape: tuple[int, ...]) -> None:
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{flags.port}")
    out = np.empty(shape, np.uint8)
    try:
        sock.send(b"%d" % WINDOW)
        while not flags.stop.is_set():
            if not sock.poll(POLL_MS):
                continue
            sock.recv()
            sock.recv_into(out.reshape(-1).data)
            sock.send(b"1")
            _got(flags, out)
    finally:
        sock.close(0)
        context.term()


# -- imagezmq ----------------------------------------------------------------------------

def _imagezmq_sender(flags: _Flags, shape: tuple[int, ...]) -> None:
    import imagezmq
    import zmq

    base = _frame(shape)
    frame = np.empty_like(base)
    sender = imagezmq.ImageSender(connect_to=f"tcp://127.0.0.1:{flags.port}")
    sender.zmq_socket.setsockopt(zmq.RCVTIMEO, int(REPLY_SECONDS * 1000))
    sender.zmq_socket.setsockopt(zmq.LINGER, 0)
    index = 0
    try:
        while _sending(flags):
            np.copyto(frame, base)
            frame[0, 0, 0] = index % 256
            try:
                sender.send_image("bench", frame)
            except zmq.Again:
                break  # the hub is gone: REQ cannot send again without its reply
            index += 1
    finally:
        sender.close()


def _imagezmq_hub(flags: _Flags) -> None:
    import imagezmq
    import zmq

    hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{flags.port}")
    hub.zmq_socket.setsockopt(zmq.LINGER, 0)
    try:
        while not flags.stop.is_set():
            if not hub.zmq_socket.poll(POLL_MS):
                continue
            _, image = hub.recv_image()
            hub.send_reply(b"OK")
            _got(flags, image)
    finally:
        hub.close()
