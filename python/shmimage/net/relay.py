"""`Relay`: receives a served key's frames and republishes them into a local key."""
from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import zmq

from ..errors import InvalidImageError, SharedMemoryError
from ..image import SharedImage
from .codecs import decode_into
from .security import client_keys, connect_with_curve, segment_identity
from .server import POLL_MS, SILENCE_SECONDS, discard_rest
from .stats import Progress, Stats, stop_on_signals
from .wire import (
    MAX_CONTROL_BYTES,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    FrameHeader,
    WireError,
    encode_control,
    parse_control,
    parse_frame_header,
    payload_bound,
)

PING_SECONDS = 1.0
BYE_LINGER_MS = 200
LOAN_SLICE = 0.5      # a lossless relay waiting for a local slot pings this often
HELLO_SECONDS = 0.5   # at most one hello this often, whatever the server says
MAX_KEY_CHARS = 255
_LOAN_TAKES_META = "meta" in inspect.signature(SharedImage.loan).parameters


class LoopError(ValueError):
    """The relay would publish into the segment it is served from."""


class Relay:
    """Receives frames from a `Server` and publishes them locally until `stop()`.

    Parameters
    ----------
    connect
        The server's ZeroMQ endpoint, e.g. ``tcp://camhost:5560``.
    key
        The local key to publish into; None: the key the server serves.
    lossless
        Ask for every frame in order (resuming after the last one on a
        reconnect; what the server no longer has is counted in ``dropped``).
    curve
        A directory in ``zmq.auth.create_certificates`` layout: the relay
        uses ``client.key_secret`` and trusts ``server.key``.
    window
        Frames in flight at once (credits granted to the server).
    max_frame_bytes
        The largest frame accepted; ZeroMQ drops a peer that sends more.
    loan_timeout
        Lossy: seconds to wait for a free local slot before a frame is
        dropped. A lossless relay waits as long as its local consumers hold
        the store up (and so holds the server's writer back).
    on_progress
        Called about once a second with a status line (fps, MB/s, dropped).
    on_notice
        Called with a sentence when the server grants less than was asked.

    Raises
    ------
    TypeError
        `key` is not a str or None.
    ValueError
        `window` outside 1 to 16, or `connect` is not a ZeroMQ endpoint.

    Examples
    --------
    .. code-block:: python

        import threading
        from shmimage.net import Relay
        relay = Relay("tcp://127.0.0.1:5560", key="camera-copy")
        threading.Thread(target=relay.run).start()
        relay.connected.wait(5)
        ...
        relay.stop()
    """

    def __init__(self, connect: str, key: str | None = None, *, lossless: bool = False,
                 curve: str | None = None, window: int = 2,
                 max_frame_bytes: int = MAX_FRAME_BYTES, loan_timeout: float = 1.0,
                 on_progress: Callable[[str], None] | None = None,
                 on_notice: Callable[[str], None] | None = None) -> None:
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        if not 1 <= window <= 16:
            raise ValueError(f"window must be 1 to 16 frames, not {window!r}")
        if "://" not in connect:
            raise ValueError(f"{connect[:100]!r} is not a ZeroMQ endpoint "
                             "(like tcp://camhost:5560)")
        self.connect, self.key, self.lossless, self.curve = connect, key, lossless, curve
        self.window, self.max_frame_bytes, self.loan_timeout = window, max_frame_bytes, loan_timeout
        self._keys = client_keys(curve) if curve else None
        self.mode: str | None = None  # what the server granted
        self.last_error: str | None = None
        self.stats = Stats()
        self.connected = threading.Event()  # set by the first welcome
        self._stopping = threading.Event()
        self._progress = Progress(self.stats, on_progress)
        self._image: SharedImage | None = SharedImage(key) if key is not None else None
        self._last_hello = 0.0
        self._last = 0  # the last generation published, in the server's current stream
        self._on_notice = on_notice

    def stop(self) -> None:
        """End `run()` within a moment; safe from any thread or a signal handler.

        Examples
        --------
        >>> from shmimage.net import Relay
        >>> relay = Relay("tcp://127.0.0.1:5560", key="docs-relay-stop")
        >>> relay.stop()
        >>> relay.run()           # stopped already: returns at once
        """
        self._stopping.set()

    def run(self) -> None:
        """Relay until `stop()`, reconnecting after 5 s without a word from the server.

        Sets `connected` at the server's first welcome; malformed or
        oversized messages are counted in `stats` and dropped.

        Raises
        ------
        zmq.ZMQError
            The endpoint cannot be connected to (e.g. an unknown host name).

        Examples
        --------
        See `Server.run` for a server and a relay exchanging a frame.

        >>> import threading
        >>> from shmimage.net import Relay
        >>> relay = Relay("tcp://127.0.0.1:5560", key="docs-relay-run")
        >>> worker = threading.Thread(target=relay.run)
        >>> worker.start()
        >>> relay.connected.wait(0.1)    # no server there: it keeps trying
        False
        >>> relay.stop(); worker.join()
        """
        context: zmq.Context[Any] = zmq.Context()
        try:
            while not self._stopping.is_set():
                sock = self._socket(context)
                try:
                    self._session(sock)
                finally:  # a moment for the bye when stopping; nothing else is kept
                    sock.close(linger=BYE_LINGER_MS if self._stopping.is_set() else 0)
                if not self._stopping.is_set():
                    self.stats.reconnects += 1
        finally:
            context.term()
            if self._image is not None:
                self._image.detach()

    def _socket(self, context: zmq.Context[Any]) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = context.socket(zmq.DEALER)
        sock.linger = 0
        sock.maxmsgsize = payload_bound(self.max_frame_bytes)  # libzmq allocates before us
        sock.rcvhwm = 2 * self.window + 16
        sock.ipv6 = "[" in self.connect
        if self._keys is not None:
            connect_with_curve(sock, self._keys)
        sock.connect(self.connect)
        return sock

    def _session(self, sock: zmq.Socket[Any]) -> None:
        self._hello(sock, force=True)
        last_heard = next_ping = time.monotonic()
        while not self._stopping.is_set():
            if sock.poll(POLL_MS, zmq.POLLIN):
                for _ in range(64):
                    try:
                        self._receive(sock)
                    except zmq.Again:
                        break
                    last_heard = time.monotonic()
            now = time.monotonic()
            if now - last_heard > SILENCE_SECONDS:
                return
            if now >= next_ping:
                _send(sock, encode_control("ping"))
                next_ping = now + PING_SECONDS
            self._progress.tick()
        _send(sock, encode_control("bye"))  # the server lets go of this relay's frames now

    def _hello(self, sock: zmq.Socket[Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_hello < HELLO_SECONDS:
            return
        self._last_hello = now
        after = self._last if self.lossless and self._last else None
        _send(sock, encode_control("hello", mode="lossless" if self.lossless else "lossy",
                                   credit=self.window, after=after))

    # -- one message --

    def _receive(self, sock: zmq.Socket[Any]) -> None:
        first = sock.recv(zmq.NOBLOCK, copy=False)
        if not sock.rcvmore:
            self._control(sock, first)
            return
        try:
            if len(first) > MAX_HEADER_BYTES:
                raise WireError("oversized header")
            header = parse_frame_header(first.bytes, self.max_frame_bytes)
            self._frame(sock, header)
        except WireError as exc:
            self._reject(exc)
        finally:
            discard_rest(sock)
            _send(sock, encode_control("credit", n=1))  # every frame message used one

    def _control(self, sock: zmq.Socket[Any], part: Any) -> None:
        try:
            if len(part) > MAX_CONTROL_BYTES:
                raise WireError("oversized control message")
            fields = parse_control(part.bytes)
        except WireError as exc:
            self._reject(exc)
            return
        op = fields["op"]
        if op == "welcome":
            self._welcome(fields)
        elif op == "reset":
            self._hello(sock)
        elif op != "ping":
            self._reject(WireError(f"unexpected {op!r} from the server"))

    def _welcome(self, fields: dict[str, Any]) -> None:
        downgraded = self.lossless and fields["mode"] != "lossless"
        if downgraded and self.mode != fields["mode"] and self._on_notice is not None:
            self._on_notice("the server sends the newest frame only: start it with "
                            "--lossless (lossless=True) for every frame")
        self.mode = fields["mode"]
        if self.mode == "lossless" and fields.get("after") is None:
            self._last = 0  # the server starts afresh (a new store): any generation is new
        key = fields.get("key")
        if self._image is None:
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
                self._reject(WireError("welcome without a usable key"))
                return
            try:
                self._image = SharedImage(key)
            except (SharedMemoryError, ValueError) as exc:  # a key this host cannot use
                self._reject(exc)
                return
            self.key = key
        served = fields.get("segment")
        if served is not None and served == segment_identity(self._image.native_key):
            raise LoopError(f"relaying into {self._image.key!r} would write into the very "
                            "segment being served (same host, same /dev/shm): give --key "
                            "another key")
        self.connected.set()

    def _reject(self, exc: Exception) -> None:
        self.stats.rejected += 1
        self.last_error = str(exc)

    def _frame(self, sock: zmq.Socket[Any], header: FrameHeader) -> None:
        """Receive the pixels into a loaned frame and publish it."""
        if not sock.rcvmore:
            raise WireError("frame without pixels")
        image = self._image
        last = self._last
        if image is None or header.generation == last or (
                self.mode == "lossless" and header.generation < last):
            return  # no key to publish into yet, or a frame already published
        try:
            self._publish(sock, image, header)
        except InvalidImageError as exc:  # a shape no frame can have: the peer's fault
            raise WireError(str(exc)) from exc
        except (TimeoutError, BufferError, SharedMemoryError) as exc:  # this host: full, pinned
            self.stats.dropped += 1
            self.last_error = str(exc)
            return
        gap = header.gap
        if last and header.generation > last:
            gap = max(gap, header.generation - last - 1)
        self.stats.frames += 1
        self.stats.bytes += header.size
        self.stats.dropped += gap
        self.stats.last_generation = self._last = header.generation

    def _publish(self, sock: zmq.Socket[Any], image: SharedImage, header: FrameHeader) -> None:
        extra: dict[str, Any] = {"meta": header.meta} if _LOAN_TAKES_META and header.meta else {}
        payload = None
        if header.encoding != "none":  # before the loan: a bad size costs no slot
            payload = sock.recv(zmq.NOBLOCK, copy=False)
            if len(payload) != header.size or sock.rcvmore:
                raise WireError(f"payload of {len(payload)} bytes, header says {header.size}")
        # An exception inside the block (a bad payload) publishes nothing.
        with self._loan(sock, image, header, extra) as out:
            if payload is not None:
                decode_into(header, payload.buffer, out)
            else:
                self._recv_pixels(sock, header, out)

    @contextlib.contextmanager
    def _loan(self, sock: zmq.Socket[Any], image: SharedImage, header: FrameHeader,
              extra: dict[str, Any]) -> Iterator[np.ndarray]:
        """`image.loan()` for this frame. Lossy: waits up to ``loan_timeout``.
        Lossless: waits as long as a local consumer holds the store up (a
        lossless subscriber, pins), pinging the server meanwhile so that it
        keeps this relay: the wait reaches the server's writer as backpressure."""
        lossless = self.mode == "lossless"
        deadline = time.monotonic() + self.loan_timeout
        while True:
            left = deadline - time.monotonic()
            wait = LOAN_SLICE if lossless else max(min(LOAN_SLICE, left), 0.0)
            block = image.loan(header.shape, header.dtype, timeout=wait, **extra)
            try:
                out = block.__enter__()
                break
            except TimeoutError:
                if self._stopping.is_set() or (not lossless and left <= wait):
                    raise
                _send(sock, encode_control("ping"))
        try:
            yield out
        except BaseException as exc:
            block.__exit__(type(exc), exc, exc.__traceback__)  # publishes nothing
            raise
        block.__exit__(None, None, None)

    def _recv_pixels(self, sock: zmq.Socket[Any], header: FrameHeader, out: np.ndarray) -> None:
        received = sock.recv_into(out.reshape(-1).view(np.uint8).data, flags=zmq.NOBLOCK)
        if received != header.nbytes or sock.rcvmore:
            raise WireError(f"payload of {received} bytes, header says {header.nbytes}")


def _send(sock: zmq.Socket[Any], message: bytes) -> None:
    try:
        sock.send(message, zmq.NOBLOCK)
    except zmq.ZMQError:
        pass  # nobody connected yet, or the queue is full: the heartbeat retries


def relay(connect: str, key: str | None = None, *, lossless: bool = False,
          curve: str | None = None, on_progress: Callable[[str], None] | None = None) -> Stats:
    """Relay the server at ``connect`` into ``key`` until Ctrl+C, SIGTERM or `Relay.stop()`.

    Parameters
    ----------
    connect
        The server's ZeroMQ endpoint, e.g. ``tcp://camhost:5560``.
    key
        The local key to publish into; None: the key the server serves.
    lossless
        Ask for every frame in order, resuming after the last one on a
        reconnect (see `Relay`).
    curve
        A directory in ``zmq.auth.create_certificates`` layout (see `Relay`).
    on_progress
        Called about once a second with a status line.

    Returns
    -------
    Stats
        The final counters.

    Raises
    ------
    TypeError, ValueError
        As for `Relay`.
    zmq.ZMQError
        The endpoint cannot be connected to.

    Examples
    --------
    It blocks until Ctrl+C or SIGTERM, like ``shmimage relay tcp://camhost:5560``:

    .. code-block:: python

        from shmimage.net import relay
        stats = relay("tcp://camhost:5560", key="camera", curve="certificates/")
        print(stats.frames, "frames received,", stats.dropped, "dropped")
    """
    runner = Relay(connect, key, lossless=lossless, curve=curve, on_progress=on_progress)
    with stop_on_signals(runner.stop):
        runner.run()
    return runner.stats
