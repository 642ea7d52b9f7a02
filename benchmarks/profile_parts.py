"""What each part of a round trip costs, in one process: shmimage's calls and iceoryx2's.

    python benchmarks/profile_parts.py [--size 640x480] [--calls 2000]

Each part is called ``--calls`` times in batches; it prints the median
microseconds per call and the minor page faults per call. Writer and reader
are two handles in one process, so no wake-up crosses processes here: what a
round trip adds on top of these parts is the two cross-process wake-ups
(see benchmarks/profile_roundtrip.py, and ``wake-rt`` in the bench).
"""
from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
from shmimage import SharedImage
from shmimage.bench import sandbox
from shmimage.bench.frames import make_frame, parse_size, unique_name
from shmimage.bench.methods_shmimage import has_read_out

BATCHES = 7
Part = Callable[[], Any]


def measure(fn: Part, calls: int) -> tuple[float, float]:
    """Median microseconds per call over batches, and minor faults per call."""
    for _ in range(max(calls // 10, 1)):
        fn()
    per_batch = max(calls // BATCHES, 1)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(BATCHES):
        start = time.perf_counter_ns()
        for _ in range(per_batch):
            fn()
        times.append((time.perf_counter_ns() - start) / per_batch / 1e3)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return statistics.median(times), faults / (per_batch * BATCHES)


def shmimage_parts(frame: np.ndarray, stack: ExitStack) -> dict[str, Part]:
    writer = SharedImage(unique_name("p"), capacity=frame.nbytes)
    stack.callback(writer.detach)
    writer.publish(frame)
    reader = SharedImage(writer.key)
    stack.callback(reader.detach)
    tiny = np.zeros((1, 1, 4), np.uint8)
    ack = SharedImage(unique_name("p"))
    stack.callback(ack.detach)
    ack.publish(tiny)
    kept = np.empty_like(frame)

    def view() -> None:
        with reader.view() as pixels:
            int(pixels.flat[0])

    def loan() -> None:
        with writer.loan(frame.shape, frame.dtype) as pixels:
            pixels[0, 0, 0] = 1

    def wait_ready() -> None:  # a frame newer than `after` is there: no sleep
        reader.wait(timeout=1.0, after=0)

    held = stack.enter_context(reader.view())  # the segment's pages, to copy from directly
    parts: dict[str, Part] = {
        "numpy.copyto into a kept array (memcpy)": lambda: np.copyto(kept, frame),
        "numpy.empty + copyto (allocating copy)": lambda: np.copyto(np.empty_like(frame), frame),
        "numpy.copyto out of the segment, kept array": lambda: np.copyto(kept, held),
        "numpy.empty + copyto out of the segment": lambda: np.copyto(np.empty_like(held), held),
        "shmimage publish(frame)": lambda: writer.publish(frame),
        "shmimage read()": reader.read,
        "shmimage view() block + touch": view,
        "shmimage loan() block + touch": loan,
        "shmimage publish(1x1) (the ack)": lambda: ack.publish(tiny),
        "shmimage wait() with a frame there": wait_ready,
        "shmimage info()": reader.info,
    }
    if has_read_out():
        read_into: Any = reader.read
        parts["shmimage read(out=)"] = lambda: read_into(out=kept)
    return parts


@contextmanager
def iceoryx2_ports(nbytes: int) -> Iterator[dict[str, Any]]:
    import iceoryx2 as iox2
    from shmimage.bench.methods_iceoryx2 import make_node

    place = sandbox.home()
    node = make_node(place.iceoryx2_root, place.prefix)
    service = (node.service_builder(iox2.ServiceName.new("parts"))
               .publish_subscribe(iox2.Slice[ctypes.c_uint8]).max_publishers(1)
               .max_subscribers(1).history_size(0).subscriber_max_buffer_size(1).create())
    event = node.service_builder(iox2.ServiceName.new("parts.ev")).event().create()
    ports = {"publisher": service.publisher_builder().initial_max_slice_len(nbytes).create(),
             "subscriber": service.subscriber_builder().buffer_size(1).create(),
             "notifier": event.notifier_builder().create(),
             "listener": event.listener_builder().create(),
             "duration": iox2.Duration.from_secs(1)}
    try:
        yield ports
    finally:
        ports.clear()
        del service, event, node


def iceoryx2_parts(frame: np.ndarray, ports: dict[str, Any]) -> dict[str, Part]:
    array_type = ctypes.c_uint8 * frame.nbytes
    publisher, subscriber = ports["publisher"], ports["subscriber"]
    kept = np.empty_like(frame)

    def array(sample: Any) -> np.ndarray:
        payload: Any = array_type.from_address(sample.payload_ptr)
        return np.frombuffer(payload, np.uint8).reshape(frame.shape)

    def send(copy: bool) -> None:
        loaned = publisher.loan_slice_uninit(frame.nbytes)
        pixels = array(loaned)
        if copy:
            np.copyto(pixels, frame)
        else:
            pixels[0, 0, 0] = 1
        del pixels
        loaned.assume_init().send()

    def receive(how: str) -> None:
        send(False)  # something to receive (its cost is the loan + send part)
        sample = subscriber.receive()
        pixels = array(sample)
        if how == "copy":
            int(pixels.copy().flat[0])
        elif how == "kept":
            np.copyto(kept, pixels)
        else:
            pixels.flags.writeable = False
            int(pixels.flat[0])

    def notify_and_wait() -> None:
        ports["notifier"].notify()
        ports["listener"].timed_wait(ports["duration"])

    return {
        "iceoryx2 loan + numpy view + copyto + send": lambda: send(True),
        "iceoryx2 loan + numpy view + touch + send": lambda: send(False),
        "iceoryx2 (loan+send) + receive + view + touch": lambda: receive("view"),
        "iceoryx2 (loan+send) + receive + allocating copy": lambda: receive("copy"),
        "iceoryx2 (loan+send) + receive + copy into kept": lambda: receive("kept"),
        "iceoryx2 notify + timed_wait (event there)": notify_and_wait,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/profile_parts.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--size", default="640x480")
    p.add_argument("--calls", type=int, default=2000)
    args = p.parse_args(argv)
    frame = make_frame(*parse_size(args.size))
    with sandbox.isolated(), ExitStack() as stack:
        parts = shmimage_parts(frame, stack)
        try:
            ports = stack.enter_context(iceoryx2_ports(frame.nbytes))
        except ImportError as exc:
            print(f"iceoryx2 not measured: {exc}", file=sys.stderr)
        else:
            parts |= iceoryx2_parts(frame, ports)
        width = max(map(len, parts))
        for name, fn in parts.items():
            micros, faults = measure(fn, args.calls)
            print(f"{name.ljust(width)}  {micros:9.2f} us  {faults:7.1f} faults/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
