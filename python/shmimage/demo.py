"""``shmimage demo``: the bundled sample image crosses from one process to another.

With a display: two viewer windows side by side, the left one already
holding the sample, so pressing the right one's bottom button finishes the
example.  Without one: one process publishes the sample, a second one reads
it back, checks every pixel and writes what it read to a file.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SharedMemoryError
from .interrupts import interrupted_by_signals
from .sample import SAMPLE_PATH, load_sample

WINDOW_KEY = "QSharedMemoryExample"
READ_REPEATS = 25
TIMEOUT = 60.0


def has_display() -> bool:
    if os.name != "posix" or sys.platform == "darwin":
        return True
    return bool(os.environ.get("DISPLAY"))


def tk_works() -> bool:
    try:
        import tkinter
    except ImportError:
        return False
    try:
        tkinter.Tk().destroy()
    except tkinter.TclError:
        return False
    return True


def run_demo(key: str | None = None, *, headless: bool = False, output: str | None = None,
             trace: bool = False) -> int:
    if not headless and has_display():
        if tk_works():
            return run_windows(key or WINDOW_KEY, trace=trace)
        print("cannot open a window here; running the headless demo instead", file=sys.stderr)
    elif not headless:
        print("no display: one process publishes the sample image, another reads it back "
              "(with a display, `shmimage demo` opens two viewer windows)")
    out = Path(output) if output else Path(tempfile.gettempdir()) / "shmimage-demo.png"
    return run_headless(key or f"shmimage-demo-{os.getpid()}", out)


# ---- with a display: two viewers -------------------------------------------------------

def viewer_command(key: str, geometry: str, trace: bool) -> list[str]:
    cmd = [sys.executable, "-m", "shmimage", "viewer", "--key", key, "--geometry", geometry]
    return cmd + (["--trace"] if trace else [])


def run_windows(key: str, *, trace: bool = False) -> int:
    first = subprocess.Popen(viewer_command(key, "+40+60", trace) + ["--load", str(SAMPLE_PATH)])
    second = subprocess.Popen(viewer_command(key, "+500+60", trace))
    print("Two viewers are opening.  The left one published the sample image under key "
          f"'{key}';\npress \"Display Image From Shared Memory\" in the right one to read it "
          "from shared memory.\nClose both windows (or press Ctrl+C) to finish.", flush=True)
    try:
        with interrupted_by_signals():
            codes = [first.wait(), second.wait()]
    except KeyboardInterrupt:
        codes = [0, 0]
    finally:
        for proc in (first, second):
            stop(proc)
    return max(codes)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---- without a display: two processes, every pixel checked -----------------------------

def median_seconds(action: Any, repeats: int = READ_REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def read_back(key: str, output: str, conn: Any) -> None:
    """The second process: attach, read, check every pixel, write the file, report."""
    from PIL import Image

    from .image import SharedImage

    try:
        expected = load_sample()
        with SharedImage(key) as image:
            start = time.perf_counter()
            pixels = image.read()
            first_read = time.perf_counter() - start
            writer_pid = image.info().writer_pid
            steady = median_seconds(image.read)
        scratch = np.empty_like(pixels)
        memcpy = median_seconds(lambda: np.copyto(scratch, pixels))
        Image.fromarray(pixels).save(output)
        conn.send({"pid": os.getpid(), "writer_pid": writer_pid, "first_read": first_read,
                   "read": steady, "memcpy": memcpy, "shape": pixels.shape,
                   "differing": count_differing(pixels, expected)})
    except (SharedMemoryError, OSError, ValueError) as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def count_differing(pixels: np.ndarray, expected: np.ndarray) -> int:
    if pixels.shape != expected.shape:
        return int(expected.shape[0] * expected.shape[1])
    return int(np.any(pixels != expected, axis=-1).sum())


def run_headless(key: str, output: Path) -> int:
    from .image import SharedImage

    sample = load_sample()
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    with SharedImage(key) as image:
        start = time.perf_counter()
        image.publish(sample)
        publish = time.perf_counter() - start
        child = ctx.Process(target=read_back, args=(key, str(output), sender), daemon=True)
        child.start()
        sender.close()
        try:
            result = receiver.recv() if receiver.poll(TIMEOUT) else {"error": "reader timed out"}
        except EOFError:
            result = {"error": "reader died without a word"}
        finally:
            child.join(TIMEOUT)
            if child.is_alive():
                child.kill()
                child.join(5)
    return report(sample, publish, result, output)


def report(sample: np.ndarray, publish: float, result: dict[str, Any], output: Path) -> int:
    if "error" in result:
        print(f"shmimage demo: error: {result['error']}", file=sys.stderr)
        return 1
    height, width = sample.shape[:2]
    ratio = result["read"] / result["memcpy"] if result["memcpy"] > 0 else float("nan")
    print(f"sample image: {width}x{height} RGBA, {sample.nbytes:,} bytes ({SAMPLE_PATH.name})")
    print(f"published by pid {os.getpid()} in {publish * 1e3:.3f} ms (create + copy in)")
    print(f"read back by pid {result['pid']} (frame written by pid {result['writer_pid']}): "
          f"first read {result['first_read'] * 1e3:.3f} ms (attach + copy)")
    print(f"steady read(): {result['read'] * 1e6:.1f} us = {ratio:.2f}x one memcpy of the "
          f"same bytes ({result['memcpy'] * 1e6:.1f} us)")
    print(f"wrote the image it read to {output}")
    if result["differing"]:
        print(f"MISMATCH: {result['differing']} of {width * height} pixels differ",
              file=sys.stderr)
        return 1
    print(f"all {width * height:,} pixels match: the image crossed from one process to another")
    return 0
