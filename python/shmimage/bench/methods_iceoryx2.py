"""iceoryx2 (its Python bindings) as a round-trip peer, both ways of the suite.

A frame travels as a publish-subscribe sample of ``Slice[c_uint8]``: the writer
loans it (``loan_slice_uninit``), fills it through a numpy view (or, in
``loan`` mode, touches one pixel: no copy anywhere) and sends it; the reader
receives it and copies it out (``read``: into a new array; ``read-out``: into
an array it keeps) or views it in place (``view``, ``loan``). Signalled over
the Pipe, the reader receives when told to; with its own wake-ups, the writer
notifies an event after sending and waits for the reader's ack event.

Every node runs with the run's own root path and prefix
(:mod:`.sandbox`) and without iceoryx2's signal handlers, so the suite's
Ctrl+C handling and the user's iceoryx2 files are left alone.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .frames import unique_name
from .roundtrip import Writer
from .sandbox import home

MODES = ("read", "read-out", "view", "loan")
WAIT_SECONDS = 30
_HERE = __name__


def make_node(root: str, prefix: str) -> Any:
    import iceoryx2 as iox2

    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    config = iox2.config.default()  # not the user's config file: the suite's own place
    config.global_cfg.root_path = iox2.Path.new(root)
    config.global_cfg.prefix = iox2.FileName.new(prefix)
    return (iox2.NodeBuilder.new().config(config)
            .signal_handling_mode(iox2.SignalHandlingMode.Disabled)
            .create(iox2.ServiceType.Ipc))


class _Ports:
    """A node, the frame service and the two event services (ping, ack) of one channel."""

    def __init__(self, root: str, prefix: str, name: str, nbytes: int, create: bool) -> None:
        import iceoryx2 as iox2

        self.iox2 = iox2
        self.node = make_node(root, prefix)
        frames = (self.node.service_builder(iox2.ServiceName.new(name))
                  .publish_subscribe(iox2.Slice[ctypes.c_uint8])
                  .max_publishers(1).max_subscribers(1).history_size(0)
                  .subscriber_max_buffer_size(1).subscriber_max_borrowed_samples(1))
        self.frames = frames.create() if create else frames.open()
        self.ping = self._event(name + ".ping", create)
        self.ack = self._event(name + ".ack", create)
        self.array_type = ctypes.c_uint8 * nbytes
        self.wait_for = iox2.Duration.from_secs(WAIT_SECONDS)

    def _event(self, name: str, create: bool) -> Any:
        builder = self.node.service_builder(self.iox2.ServiceName.new(name)).event()
        return builder.create() if create else builder.open()

    def array(self, sample: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A numpy view of a sample's payload: valid only while the sample is."""
        payload: Any = self.array_type.from_address(sample.payload_ptr)
        pixels: np.ndarray = np.frombuffer(payload, np.uint8).reshape(shape)
        return pixels

    def wait(self, listener: Any) -> None:
        if not listener.timed_wait(self.wait_for):
            raise TimeoutError(f"no iceoryx2 event within {WAIT_SECONDS} s")

    def close(self) -> None:
        """Services before their node (the ports that use them are gone already)."""
        self.frames = self.ping = self.ack = None
        self.node = None


class IceoryxWriter(Writer):
    """Loans a sample, fills it (or touches one pixel in ``loan`` mode) and sends it."""

    reader_role = f"{_HERE}:IceoryxReader"

    def __init__(self, frame: np.ndarray, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.frame, self.mode, self.count = frame, mode, 0
        place, name = home(), unique_name("x")
        self.args = {"root": place.iceoryx2_root, "prefix": place.prefix, "name": name,
                     "shape": frame.shape, "mode": mode}
        self.ports: Any = _Ports(place.iceoryx2_root, place.prefix, name, frame.nbytes,
                                 create=True)
        ports = self.ports
        self.publisher = (ports.frames.publisher_builder().initial_max_slice_len(frame.nbytes)
                          .max_loaned_samples(1).create())
        self.notifier = ports.ping.notifier_builder().create()
        self.acks = ports.ack.listener_builder().create()

    def reader_args(self) -> dict[str, Any]:
        return dict(self.args)

    def publish(self) -> None:
        loaned = self.publisher.loan_slice_uninit(self.frame.nbytes)
        pixels = self.ports.array(loaned, self.frame.shape)
        if self.mode == "loan":
            self.count += 1
            pixels[0, 0, 0] = self.count & 0xFF
        else:
            np.copyto(pixels, self.frame)
        del pixels
        loaned.assume_init().send()

    def exchange(self) -> None:
        """With iceoryx2's own wake-ups: send, notify, wait for the reader's ack event."""
        self.publish()
        self.notifier.notify()
        self.ports.wait(self.acks)

    def close(self) -> None:
        self.acks = self.notifier = self.publisher = None
        self.ports.close()


class IceoryxReader:
    def __init__(self, root: str, prefix: str, name: str, shape: tuple[int, ...],
                 mode: str) -> None:
        self.shape, self.mode = tuple(shape), mode
        self.ports: Any = _Ports(root, prefix, name, int(np.prod(shape)), create=False)
        self.subscriber = self.ports.frames.subscriber_builder().buffer_size(1).create()
        self.pings = self.ports.ping.listener_builder().create()
        self.notifier = self.ports.ack.notifier_builder().create()
        self.out = np.empty(self.shape, np.uint8)

    def step(self, message: bytes) -> None:
        sample = self.subscriber.receive()
        if sample is None:
            raise RuntimeError("iceoryx2: signalled, but no sample was there")
        self._use(sample)

    def _use(self, sample: Any) -> None:
        pixels = self.ports.array(sample, self.shape)
        if self.mode == "read":
            int(pixels.copy().flat[0])
        elif self.mode == "read-out":
            np.copyto(self.out, pixels)
        else:
            pixels.flags.writeable = False
            int(pixels.flat[0])

    def arm(self) -> None:
        pass

    def pong(self) -> None:
        """Wait for the ping event, take the sample, use it, notify the ack event."""
        while True:
            self.ports.wait(self.pings)
            sample = self.subscriber.receive()
            if sample is not None:
                break
        self._use(sample)
        del sample
        self.notifier.notify()

    def close(self) -> None:
        self.notifier = self.pings = self.subscriber = None
        self.ports.close()
