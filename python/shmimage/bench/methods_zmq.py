"""pyzmq and imagezmq as round-trip peers, over ``ipc://`` in the run's own folder.

pyzmq: one ``PAIR`` socket each side, the frame sent with ``copy=False``; the
reader receives it into a private buffer, as ``bytes`` (``read``: one more
copy) or as a zero-copy view of the message (``view``). With its own
wake-ups the reader's reply message is the ack.

imagezmq: its ``ImageSender``/``ImageHub``. With its own wake-ups, its default
``REQ/REP`` (``send_image`` returns on the hub's reply); signalled over the
Pipe, its ``PUB/SUB`` mode, primed until the subscription is live (a ``PUB``
socket drops what it sends before that).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .pool import Reader
from .roundtrip import Writer
from .sandbox import home

MODES = ("read", "view")
WAIT_MS = 30_000
#: Seconds a PUB/SUB pair may take to connect before the suite gives up.
PRIME_SECONDS = 10.0
ACK = b"a"
_HERE = __name__


def _guard(socket: Any) -> Any:
    """No hang on a dead peer (a timeout instead) and no lingering at close."""
    import zmq

    socket.setsockopt(zmq.RCVTIMEO, WAIT_MS)
    socket.setsockopt(zmq.SNDTIMEO, WAIT_MS)
    socket.setsockopt(zmq.LINGER, 0)
    return socket


class PairWriter(Writer):
    reader_role = f"{_HERE}:PairReader"

    def __init__(self, frame: np.ndarray, mode: str) -> None:
        import zmq

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.frame, self.mode = frame, mode
        self.endpoint = home().endpoint("z")
        self.context = zmq.Context()
        self.socket = _guard(self.context.socket(zmq.PAIR))
        self.socket.bind(self.endpoint)

    def reader_args(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "shape": self.frame.shape, "mode": self.mode}

    def publish(self) -> None:
        self.socket.send(self.frame, copy=False)

    def exchange(self) -> None:
        self.publish()
        self.socket.recv()

    def close(self) -> None:
        self.socket.close()
        self.context.term()


class PairReader:
    def __init__(self, endpoint: str, shape: tuple[int, ...], mode: str) -> None:
        import zmq

        self.shape, self.copy = tuple(shape), mode == "read"
        self.context = zmq.Context()
        self.socket = _guard(self.context.socket(zmq.PAIR))
        self.socket.connect(endpoint)

    def step(self, message: bytes) -> None:
        if self.copy:
            pixels = np.frombuffer(self.socket.recv(copy=True), np.uint8)
        else:
            pixels = np.frombuffer(self.socket.recv(copy=False).buffer, np.uint8)
        int(pixels.reshape(self.shape).flat[0])

    def arm(self) -> None:
        pass

    def pong(self) -> None:
        self.step(b"")
        self.socket.send(ACK)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


class ImageZmqWriter(Writer):
    """``ImageSender``: ``PUB`` (Pipe-signalled) or ``REQ`` (its own replies)."""

    reader_role = f"{_HERE}:ImageZmqReader"

    def __init__(self, frame: np.ndarray, req_rep: bool) -> None:
        import imagezmq

        self.frame, self.req_rep = frame, req_rep
        self.endpoint = home().endpoint("z")
        self.sender = imagezmq.ImageSender(connect_to=self.endpoint, REQ_REP=req_rep)
        _guard(self.sender.zmq_socket)

    def reader_args(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "req_rep": self.req_rep}

    def publish(self) -> None:
        self.sender.send_image("frame", self.frame)

    def exchange(self) -> None:
        self.publish()  # REQ/REP: returns with the hub's reply

    def prime(self, readers: Sequence[Reader]) -> None:
        """Publish until every subscriber got a frame, then let them drain the rest."""
        if self.req_rep:
            return
        deadline = time.monotonic() + PRIME_SECONDS
        waiting = list(readers)
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"imagezmq PUB/SUB not connected within {PRIME_SECONDS} s")
            self.publish()
            waiting = [r for r in waiting if not r.request("call", "drain", (0.05,))]
        time.sleep(0.1)
        for reader in readers:
            reader.request("call", "drain", (0.05,))

    def close(self) -> None:
        self.sender.close()


class ImageZmqReader:
    def __init__(self, endpoint: str, req_rep: bool) -> None:
        import imagezmq

        self.req_rep = req_rep
        self.hub = imagezmq.ImageHub(open_port=endpoint, REQ_REP=req_rep)
        _guard(self.hub.zmq_socket)

    def step(self, message: bytes) -> None:
        _, pixels = self.hub.recv_image()
        int(pixels.flat[0])

    def drain(self, conn: Any, seconds: float) -> bool:
        """Whether any frame came within ``seconds``; every frame waiting is taken."""
        import zmq

        got = False
        while self.hub.zmq_socket.poll(int(seconds * 1000), zmq.POLLIN):
            self.hub.recv_image()
            got, seconds = True, 0.0
        return got

    def arm(self) -> None:
        pass

    def pong(self) -> None:
        self.step(b"")
        self.hub.send_reply(b"OK")

    def close(self) -> None:
        self.hub.close()
