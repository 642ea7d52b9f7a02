"""Frames per second over loopback TCP: shmimage serve -> relay against raw pyzmq.

    python benchmarks/net_fps.py [--seconds 10] [--shape 1080x1920x3] [--compress lz4 ...]

Also imagezmq's ImageSender/ImageHub (REQ/REP) where it is installed.
The producer fills a loaned frame (one row changes per frame); the relay side
counts what it publishes and a consumer views. Raw pyzmq streams the same
bytes with the same in-flight window (2 frames, credits over ROUTER/DEALER)
and receives into a preallocated array, as the relay receives into a loan.
Prints one JSON line per mode; no figure is asserted.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
import uuid
from typing import Any

import numpy as np

WINDOW = 2
PRODUCER_FPS = 0.0  # 0: as fast as it can


def produce(key: str, shape: tuple[int, ...], stop: Any, pattern: str, fps: float) -> None:
    from shmimage import SharedImage

    rng = np.random.default_rng(1)
    base = (rng.integers(0, 256, shape, dtype=np.uint8) if pattern == "noise"
            else np.broadcast_to(np.arange(shape[1], dtype=np.uint8)[None, :, None], shape))
    image = SharedImage(key)
    index = 0
    pause = 1.0 / fps if fps else 0.0
    while not stop.is_set():
        if pause:
            time.sleep(pause)
        with image.loan(shape, np.uint8, timeout=1.0) as frame:
            if index < 3:  # the first slots get the full picture, later frames one row
                frame[...] = base
            frame[index % shape[0]] = index % 256
        index += 1
    image.detach()


def serve(key: str, port: int, options: dict[str, Any], stop: Any) -> None:
    from shmimage.net import Server

    server = Server(key, f"tcp://127.0.0.1:{port}", **options, **json.loads(os.environ.get("BENCH_SERVER", "{}")))
    thread = threading.Thread(target=server.run)
    thread.start()
    stop.wait()
    server.stop()
    thread.join()


def relay(key: str, port: int, options: dict[str, Any], stop: Any, result: Any,
          seconds: float) -> None:
    from shmimage import SharedImage
    from shmimage.net import Relay

    runner = Relay(f"tcp://127.0.0.1:{port}", key, **options)
    thread = threading.Thread(target=runner.run)
    thread.start()
    viewed = 0
    with SharedImage(key) as image:
        deadline = time.monotonic() + 30
        while runner.stats.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        start_frames, start_bytes, start = runner.stats.frames, runner.stats.bytes, time.monotonic()
        after = runner.stats.last_generation
        while time.monotonic() - start < seconds:
            try:
                after = image.wait(timeout=0.5, after=None)
            except TimeoutError:
                continue
            with image.view() as pixels:
                viewed += int(pixels[0, 0, 0] >= 0)
        elapsed = time.monotonic() - start
        result.put({"fps": (runner.stats.frames - start_frames) / elapsed,
                    "MBps": (runner.stats.bytes - start_bytes) / elapsed / 1e6,
                    "viewed_fps": viewed / elapsed, "dropped": runner.stats.dropped,
                    "rejected": runner.stats.rejected, "after": after})
    stop.set()
    runner.stop()
    thread.join()


def raw_sender(port: int, shape: tuple[int, ...], stop: Any) -> None:
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(f"tcp://127.0.0.1:{port}")
    frames = [np.zeros(shape, np.uint8) for _ in range(WINDOW + 1)]
    credits: dict[bytes, int] = {}
    index = 0
    while not stop.is_set():
        if sock.poll(100):
            ident, message = sock.recv_multipart()
            credits[ident] = credits.get(ident, 0) + int(message)
        for ident, credit in credits.items():
            while credit > 0:
                frame = frames[index % len(frames)]
                frame[index % shape[0]] = index % 256
                sock.send_multipart([ident, json.dumps({"i": index}).encode(), frame],
                                    copy=False)
                credit -= 1
                index += 1
            credits[ident] = 0
    sock.close(0)
    context.term()


def raw_receiver(port: int, shape: tuple[int, ...], stop: Any, result: Any,
                 seconds: float) -> None:
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.send(str(WINDOW).encode())
    out = np.empty(shape, np.uint8)
    count, start = -5, 0.0
    while count < 0 or time.monotonic() - start < seconds:
        sock.recv()
        sock.recv_into(out.reshape(-1).data)
        sock.send(b"1")
        count += 1
        if count == 0:
            start = time.monotonic()
    elapsed = time.monotonic() - start
    result.put({"fps": count / elapsed, "MBps": count * out.nbytes / elapsed / 1e6})
    stop.set()
    sock.close(0)
    context.term()


def imagezmq_sender(port: int, shape: tuple[int, ...], stop: Any) -> None:
    import imagezmq

    sender = imagezmq.ImageSender(connect_to=f"tcp://127.0.0.1:{port}")
    frame = np.zeros(shape, np.uint8)
    index = 0
    while not stop.is_set():
        frame[index % shape[0]] = index % 256
        sender.send_image("bench", frame)
        index += 1
    sender.close()


def imagezmq_hub(port: int, stop: Any, result: Any, seconds: float) -> None:
    import imagezmq

    hub = imagezmq.ImageHub(open_port=f"tcp://127.0.0.1:{port}")
    count, start, nbytes = -5, 0.0, 0
    while count < 0 or time.monotonic() - start < seconds:
        _, image = hub.recv_image()
        hub.send_reply(b"OK")
        nbytes = image.nbytes
        count += 1
        if count == 0:
            start = time.monotonic()
    elapsed = time.monotonic() - start
    result.put({"fps": count / elapsed, "MBps": count * nbytes / elapsed / 1e6})
    stop.set()
    deadline = time.monotonic() + 1.0  # answer the sender's last request, then go
    while time.monotonic() < deadline:
        if hub.zmq_socket.poll(100):
            hub.recv_image()
            hub.send_reply(b"OK")
    hub.close()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_shmimage(shape: tuple[int, ...], seconds: float, lossless: bool,
                 compress: str | None, pattern: str) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    stop, result = ctx.Event(), ctx.Queue()
    src, dst = f"bench-net-src-{uuid.uuid4().hex[:8]}", f"bench-net-dst-{uuid.uuid4().hex[:8]}"
    port = free_port()
    procs = [ctx.Process(target=produce, args=(src, shape, stop, pattern, PRODUCER_FPS)),
             ctx.Process(target=serve, args=(src, port, {"lossless": lossless,
                                                          "compress": compress}, stop)),
             ctx.Process(target=relay, args=(dst, port, {"lossless": lossless}, stop, result,
                                              seconds))]
    for proc in procs:
        proc.start()
    try:
        facts: dict[str, Any] = result.get(timeout=seconds + 60)
    finally:
        stop.set()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return facts


def run_raw(shape: tuple[int, ...], seconds: float, imagezmq: bool = False) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    stop, result = ctx.Event(), ctx.Queue()
    port = free_port()
    if imagezmq:
        procs = [ctx.Process(target=imagezmq_hub, args=(port, stop, result, seconds)),
                 ctx.Process(target=imagezmq_sender, args=(port, shape, stop))]
    else:
        procs = [ctx.Process(target=raw_sender, args=(port, shape, stop)),
                 ctx.Process(target=raw_receiver, args=(port, shape, stop, result, seconds))]
    for proc in procs:
        proc.start()
    try:
        facts: dict[str, Any] = result.get(timeout=seconds + 60)
    finally:
        stop.set()
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shape", default="1080x1920x3")
    parser.add_argument("--compress", nargs="*", default=[])
    parser.add_argument("--producer-fps", type=float, default=0.0,
                        help="pace the producer (0: flat out; it then competes for the CPU)")
    args = parser.parse_args()
    global PRODUCER_FPS
    PRODUCER_FPS = args.producer_fps
    shape = tuple(int(n) for n in args.shape.split("x"))
    print(json.dumps({"shape": shape, "seconds": args.seconds, "window": WINDOW,
                      "cpus": os.cpu_count(), "load": os.getloadavg()}), flush=True)
    runs: list[tuple[str, Any]] = [
        ("raw pyzmq", lambda: run_raw(shape, args.seconds)),
        ("shmimage lossy", lambda: run_shmimage(shape, args.seconds, False, None, "gradient")),
        ("shmimage lossless", lambda: run_shmimage(shape, args.seconds, True, None, "gradient")),
    ]
    try:
        import imagezmq  # noqa: F401
    except ImportError:
        pass
    else:
        runs.append(("imagezmq REQ/REP", lambda: run_raw(shape, args.seconds, imagezmq=True)))
    for codec in args.compress:
        runs.append((f"shmimage lossy {codec}",
                     lambda c=codec: run_shmimage(shape, args.seconds, False, c, "gradient")))
    for name, run in runs:
        facts = run()
        print(json.dumps({"mode": name, **{k: round(v, 1) if isinstance(v, float) else v
                                           for k, v in facts.items()},
                          "load": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
