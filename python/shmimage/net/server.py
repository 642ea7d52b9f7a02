"""`Server`: forwards a local key's frames to relays over a ZeroMQ ROUTER socket."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

from ..errors import NotAttachedError, SharedMemoryError
from ..image import SharedImage
from ._source import FollowLatest, FrameSource, LatestFrames, Pinned
from ._stream import EveryFrame
from .codecs import encode, parse_codec
from .security import check_bind, segment_identity, serve_with_curve, server_keys
from .stats import Progress, Stats, stop_on_signals
from .wire import (
    MAX_CONTROL_BYTES,
    FrameHeader,
    WireError,
    encode_control,
    encode_frame_header,
    parse_control,
)

DEFAULT_BIND = "tcp://127.0.0.1:5560"
POLL_MS = 100
HEARTBEAT_SECONDS = 1.0
SILENCE_SECONDS = 5.0      # a relay this long silent is dropped
MAX_RELAYS = 64
MAX_WINDOW = 16            # credits a lossless relay may hold at once
LOSSY_WINDOW = 2           # frames in flight to a lossy relay: the newest wins
WATCH_SECONDS = 0.25       # how often the frame watcher looks at the stop flag


@dataclass
class _Peer:
    mode: str
    window: int
    source: FrameSource
    credits: int
    last_heard: float
    inflight: list[tuple[Any, Pinned]] = field(default_factory=list)


class Server:
    """Serves one key to any number of relays until `stop()`.

    Parameters
    ----------
    key
        The local key whose frames are sent.
    bind
        A ZeroMQ endpoint; ``tcp://127.0.0.1:PORT`` by default. Any address
        other hosts can reach needs ``curve`` or ``insecure=True``.
    lossless
        Whether relays may ask for every frame in order: each such relay gets
        a lossless subscription of the store, so the local writer waits for
        a relay that lags (its `TimeoutError` names this server's pid) until
        the relay catches up or is dropped after 5 s without a word. Else
        each relay is served lossy: the newest frame, at most 2 in flight.
    compress
        ``None``/``"none"``, ``"lz4"``, ``"zstd"``, ``"png"``, ``"jpeg"`` or ``"jpeg:Q"``.
    curve
        A directory in ``zmq.auth.create_certificates`` layout: the server
        uses ``server.key_secret`` and accepts every other ``*.key`` in it.
    insecure
        Allow a non-local bind without CURVE.
    max_pins
        Frame slots the server keeps pinned for lossy sends at once; frames
        beyond that are sent from a private copy, so a writer is never held
        up by lossy relays. The default, a lossy relay's window, sends every
        frame of one relay zero-copy: the store takes a spare slot (up to its
        ``max_slots``) while the server pins two; give 1 for a store made
        with ``max_slots=2``. (A lossless relay's frames stay pinned while
        in flight: at most its window of them.)
    on_progress
        Called about once a second with a status line (fps, MB/s, dropped).

    Raises
    ------
    TypeError
        `key` is not a str.
    ValueError
        A non-local `bind` without `curve` or `insecure`, or a bad `compress`.

    Examples
    --------
    .. code-block:: python

        import threading
        from shmimage.net import Server
        server = Server("camera", "tcp://127.0.0.1:5560")
        threading.Thread(target=server.run).start()
        server.ready.wait(5)
        ...
        server.stop()
    """

    def __init__(self, key: str, bind: str = DEFAULT_BIND, *, lossless: bool = False,
                 compress: str | None = None, curve: str | None = None, insecure: bool = False,
                 max_pins: int = LOSSY_WINDOW,
                 on_progress: Callable[[str], None] | None = None) -> None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        check_bind(bind, curve, insecure)
        self.key, self.bind, self.lossless, self.curve = key, bind, lossless, curve
        self._native_key = SharedImage(key).native_key
        self.codec = parse_codec(compress)
        self._keys = server_keys(curve) if curve else None
        self.max_pins = max_pins
        self.stats = Stats()
        self.endpoint: str | None = None  # the bound endpoint once `ready` is set
        self.ready = threading.Event()
        self._stopping = threading.Event()
        self._progress = Progress(self.stats, on_progress, server=True)
        self._peers: dict[bytes, _Peer] = {}
        self._orphans: list[tuple[Any, Pinned]] = []  # sends to relays already dropped
        self._encoded: tuple[int, str, Any] | None = None
        self._frames: LatestFrames | None = None

    def stop(self) -> None:
        """End `run()` within a moment; safe from any thread or a signal handler.

        Examples
        --------
        >>> from shmimage.net import Server
        >>> server = Server("docs-net-stop", "tcp://127.0.0.1:*")
        >>> server.stop()
        >>> server.run()          # stopped already: binds, then returns at once
        """
        self._stopping.set()

    def run(self) -> None:
        """Serve until `stop()`; sockets, pins and threads are gone when it returns.

        Sets `ready` (and `endpoint`) once bound.

        Raises
        ------
        zmq.ZMQError
            The endpoint cannot be bound (e.g. the port is taken).

        Examples
        --------
        A server and a relay in threads of one process (on two hosts, each runs in
        its own process: ``shmimage serve`` and ``shmimage relay``):

        >>> import threading, numpy as np, shmimage
        >>> from shmimage.net import Relay, Server
        >>> camera = shmimage.SharedImage("docs-net-camera")
        >>> _ = camera.publish(np.full((2, 2), 5, np.uint8))
        >>> server = Server("docs-net-camera", "tcp://127.0.0.1:*")   # any free port
        >>> serving = threading.Thread(target=server.run)
        >>> serving.start()
        >>> server.ready.wait(10)
        True
        >>> relay = Relay(server.endpoint, key="docs-net-copy")
        >>> relaying = threading.Thread(target=relay.run)
        >>> relaying.start()
        >>> copy = shmimage.SharedImage("docs-net-copy")
        >>> copy.wait(timeout=10, after=0) >= 1 and int(copy.read()[0, 0])
        5
        >>> relay.stop(); server.stop(); relaying.join(); serving.join()
        >>> copy.detach() and camera.detach()
        True
        """
        context: zmq.Context[Any] = zmq.Context()
        auth = frames = watcher = None
        sockets: list[zmq.Socket[Any]] = []
        try:
            sock = context.socket(zmq.ROUTER)
            sockets.append(sock)
            sock.linger = 0
            sock.maxmsgsize = MAX_CONTROL_BYTES  # relays only send control messages
            sock.ipv6 = "[" in self.bind
            if self._keys is not None:
                auth = serve_with_curve(context, sock, self._keys)
            sock.bind(self.bind)
            self.endpoint = sock.get(zmq.LAST_ENDPOINT).decode()
            wake = context.socket(zmq.PAIR)
            sockets.append(wake)
            wake.linger = 0
            address = f"inproc://shmimage-frames-{id(self)}"
            wake.bind(address)
            watcher = threading.Thread(target=self._watch, args=(context, address),
                                       name="shmimage-serve-watch", daemon=True)
            watcher.start()
            frames = self._frames = LatestFrames(self.key, self.max_pins)
            self.ready.set()
            self._loop(sock, wake)
        finally:
            self._stopping.set()
            if watcher is not None:
                watcher.join()
            for s in sockets:
                s.close(linger=0)
            if auth is not None:
                auth.stop()
            context.term()  # every message ZeroMQ held is freed: now the pins can go
            self._release_all()
            if frames is not None:
                frames.close()
            self._frames = None

    # -- the watcher thread: wakes the loop when a frame is published --

    def _watch(self, context: zmq.Context[Any], address: str) -> None:
        wake = context.socket(zmq.PAIR)
        wake.linger = 0
        wake.sndhwm = 4
        wake.connect(address)
        image = SharedImage(self.key)
        after = 0
        try:
            while not self._stopping.is_set():
                try:
                    after = image.wait(timeout=WATCH_SECONDS, after=after)
                except TimeoutError:
                    continue
                except (NotAttachedError, SharedMemoryError):
                    image.detach()
                    image = SharedImage(self.key)
                    self._stopping.wait(WATCH_SECONDS)
                    continue
                try:
                    wake.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # the loop has wake-ups pending already
        finally:
            wake.close(linger=0)
            image.detach()

    # -- the loop: control messages in, frames out --

    def _loop(self, sock: zmq.Socket[Any], wake: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        next_beat = 0.0
        while not self._stopping.is_set():
            ready = dict(poller.poll(POLL_MS))
            if wake in ready:
                _drain(wake)
            if sock in ready:
                self._receive(sock)
            self._reap()
            self._send_all(sock)
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeat(sock, now)
                next_beat = now + HEARTBEAT_SECONDS
            self._progress.tick()

    def _receive(self, sock: zmq.Socket[Any]) -> None:
        for _ in range(256):
            try:
                parts = _recv_parts(sock, 2)
            except zmq.Again:
                return
            if parts is None or len(parts) != 2:
                self.stats.rejected += 1
                continue
            try:
                fields = parse_control(parts[1])
            except WireError:
                self.stats.rejected += 1
                continue
            self._control(sock, parts[0], fields)

    def _control(self, sock: zmq.Socket[Any], ident: bytes, fields: dict[str, Any]) -> None:
        op = fields["op"]
        peer = self._peers.get(ident)
        if op == "hello":
            self._hello(sock, ident, fields)
        elif op == "bye":
            if peer is not None:
                self._drop(ident)
        elif op not in ("credit", "ping"):
            self.stats.rejected += 1
        elif peer is None:  # a relay this server does not know (it restarted): start over
            _send(sock, [ident, encode_control("reset")])
        else:
            peer.last_heard = time.monotonic()
            if op == "credit":
                peer.credits = min(peer.credits + fields["n"], peer.window)

    def _hello(self, sock: zmq.Socket[Any], ident: bytes, fields: dict[str, Any]) -> None:
        if ident in self._peers:
            self._drop(ident)
        if len(self._peers) >= MAX_RELAYS:
            self.stats.rejected += 1
            return
        mode = "lossless" if fields["mode"] == "lossless" and self.lossless else "lossy"
        after = fields.get("after")
        window = min(fields["credit"], MAX_WINDOW if mode == "lossless" else LOSSY_WINDOW)
        source = self._source_for(mode, after)
        if source is None:
            return
        self._peers[ident] = _Peer(mode, window, source, window, time.monotonic())
        self.stats.relays = len(self._peers)
        resumes = source.after if isinstance(source, EveryFrame) else None
        _send(sock, [ident, encode_control("welcome", mode=mode, key=self.key, after=resumes,
                                           segment=segment_identity(self._native_key))])

    def _source_for(self, mode: str, after: int | None) -> FrameSource | None:
        """Where a relay's frames come from: lossy relays share the newest frame;
        a lossless relay gets its own lossless subscription of the store, from
        just after ``after`` (its last generation) when the store still keeps it."""
        if self._frames is None:
            return None
        if mode != "lossless":
            return FollowLatest(self._frames, None)
        try:
            return EveryFrame(self._frames.image, after)
        except (SharedMemoryError, ValueError) as exc:  # e.g. 64 lossless subscribers already
            self._frames.last_error = str(exc)
            self.stats.rejected += 1
            return None

    def _send_all(self, sock: zmq.Socket[Any]) -> None:
        for ident, peer in self._peers.items():
            while peer.credits > 0:
                taken = peer.source.take()
                if taken is None:
                    break
                gap, frame = taken
                try:
                    self._send_frame(sock, ident, peer, gap, frame)
                except zmq.ZMQError:
                    frame.release()
                    break
                peer.credits -= 1

    def _send_frame(self, sock: zmq.Socket[Any], ident: bytes, peer: _Peer, gap: int,
                    frame: Pinned) -> None:
        encoding, payload = self._payload(frame)
        size = len(memoryview(payload).cast("B"))
        header = FrameHeader(frame.generation, frame.timestamp_ns, frame.pixels.shape,
                             frame.pixels.dtype, encoding, size, gap, frame.meta)
        tracker = sock.send_multipart([ident, encode_frame_header(header), payload],
                                      zmq.NOBLOCK, copy=False, track=True)
        if payload is frame.pixels:  # zero-copy: the pin stays until ZeroMQ is done
            peer.inflight.append((tracker, frame))
        else:
            frame.release()
        self.stats.frames += 1
        self.stats.bytes += size
        self.stats.dropped += gap
        self.stats.last_generation = frame.generation

    def _payload(self, frame: Pinned) -> tuple[str, Any]:
        """The frame as sent: its pixels, or encoded once for every relay."""
        if self.codec.name == "none":
            return "none", frame.pixels
        cached = self._encoded
        if cached is None or cached[0] != frame.generation:
            cached = (frame.generation, *encode(frame.pixels, self.codec))
            self._encoded = cached
        if cached[1] == "none":
            return "none", frame.pixels
        return cached[1], cached[2]

    def _reap(self) -> None:
        """Release the pins of sends ZeroMQ is done with."""
        for peer in self._peers.values():
            peer.inflight = _unfinished(peer.inflight)
        self._orphans = _unfinished(self._orphans)

    def _heartbeat(self, sock: zmq.Socket[Any], now: float) -> None:
        for ident, peer in list(self._peers.items()):
            if now - peer.last_heard > SILENCE_SECONDS:
                self._drop(ident)
            else:
                _send(sock, [ident, encode_control("ping")])

    def _drop(self, ident: bytes) -> None:
        peer = self._peers.pop(ident)
        self.stats.relays = len(self._peers)  # before close() frees a waiting writer
        self._orphans.extend(peer.inflight)
        peer.source.close()

    def _release_all(self) -> None:
        for ident in list(self._peers):
            self._drop(ident)
        for _, frame in self._orphans:
            frame.release()
        self._orphans = []


def _unfinished(sends: list[tuple[Any, Pinned]]) -> list[tuple[Any, Pinned]]:
    left = []
    for tracker, frame in sends:
        if tracker.done:
            frame.release()
        else:
            left.append((tracker, frame))
    return left


def _drain(sock: zmq.Socket[Any]) -> None:
    for _ in range(1024):
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return


def _recv_parts(sock: zmq.Socket[Any], max_parts: int) -> list[bytes] | None:
    """One message's parts (each bounded by MAXMSGSIZE); None when it has more
    than ``max_parts`` parts (the rest is discarded unread)."""
    parts = [sock.recv(zmq.NOBLOCK)]
    while sock.rcvmore:
        if len(parts) > max_parts:
            discard_rest(sock)
            return None
        parts.append(sock.recv(zmq.NOBLOCK))
    return parts


def discard_rest(sock: zmq.Socket[Any]) -> None:
    """Discard the current message's remaining parts without copying them."""
    while sock.rcvmore:
        sock.recv_into(bytearray(), flags=zmq.NOBLOCK)


def _send(sock: zmq.Socket[Any], parts: list[bytes]) -> None:
    try:
        sock.send_multipart(parts, zmq.NOBLOCK)
    except zmq.ZMQError:
        pass  # a relay that went away: the heartbeat forgets it


def serve(key: str, bind: str = DEFAULT_BIND, *, lossless: bool = False,
          compress: str | None = None, curve: str | None = None, insecure: bool = False,
          on_progress: Callable[[str], None] | None = None) -> Stats:
    """Serve ``key`` on ``bind`` until Ctrl+C, SIGTERM or `Server.stop()`.

    Parameters
    ----------
    key
        The local key whose frames are sent.
    bind
        A ZeroMQ endpoint; ``tcp://127.0.0.1:5560`` by default.
    lossless
        Whether relays may ask for every frame in order: each such relay
        rides a lossless subscription, so a lagging relay holds the local
        writer back (see `Server`).
    compress
        ``None``/``"none"``, ``"lz4"``, ``"zstd"``, ``"png"``, ``"jpeg"`` or ``"jpeg:Q"``.
    curve
        A directory in ``zmq.auth.create_certificates`` layout (see `Server`).
    insecure
        Allow a non-local bind without CURVE.
    on_progress
        Called about once a second with a status line.

    Returns
    -------
    Stats
        The final counters.

    Raises
    ------
    TypeError, ValueError
        As for `Server`.
    zmq.ZMQError
        The endpoint cannot be bound (e.g. the port is taken).

    Examples
    --------
    It blocks until Ctrl+C or SIGTERM, like ``shmimage serve camera``:

    .. code-block:: python

        from shmimage.net import serve
        stats = serve("camera", "tcp://0.0.0.0:5560", curve="certificates/")
        print(stats.frames, "frames sent")
    """
    server = Server(key, bind, lossless=lossless, compress=compress, curve=curve,
                    insecure=insecure, on_progress=on_progress)
    with stop_on_signals(server.stop):
        server.run()
    return server.stats
