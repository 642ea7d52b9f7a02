"""Helpers for the CLI, demo and viewer tests: the command in subprocesses, Xvfb, screenshots."""
from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

TIMEOUT = 60.0


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m shmimage` child: no display unless asked for."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmimage", *args], capture_output=True,
                          text=True, env=env or cli_env(), timeout=timeout, check=False)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "shmimage", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or cli_env())


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    """Signal a child and reap it; SIGKILL if it does not go in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=TIMEOUT / 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=TIMEOUT / 2)
    return proc.returncode


class Lines:
    """Reads a child's stdout on a thread, so tests can wait for a line with a timeout."""

    def __init__(self, stream: Any) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, predicate: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"no matching line in {timeout}s; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"the child closed its output; saw {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line


class Events(Lines):
    """The viewer's `--trace` output: one JSON object per line."""

    def event(self, kind: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        def matches(line: str) -> bool:
            try:
                event = json.loads(line)
            except ValueError:
                return False
            return event.get("event") == kind and all(event.get(k) == v
                                                      for k, v in fields.items())
        return json.loads(self.expect(matches, timeout))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing command must print on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert "Traceback" not in result.stderr
    return lines[0]


SHM_DIR = "/dev/shm"
HAS_SHM_DIR = os.path.isdir(SHM_DIR)
POSIX_SIGNALS = sys.platform != "win32"


def segment_exists(key: str) -> bool:
    """Whether the segment's name exists, without attaching (which could reclaim it)."""
    from shmimage import NotFoundError, SharedMemory

    if HAS_SHM_DIR:
        return os.path.exists(os.path.join(SHM_DIR, SharedMemory(key).native_key.lstrip("/")))
    try:
        with SharedMemory(key) as probe:
            probe.attach()
    except NotFoundError:
        return False
    return True


# ---- a real X server ----------------------------------------------------------------

X_TOOLS = ("Xvfb", "xdotool", "import")


def missing_x_tools() -> list[str]:
    return [tool for tool in X_TOOLS if shutil.which(tool) is None]


def start_xvfb(width: int = 1280, height: int = 800) -> tuple[subprocess.Popen[bytes], str]:
    """A private Xvfb; it picks a free display number and tells us through a pipe."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        number = read_display_number(read_fd)
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise
    finally:
        os.close(read_fd)
    return proc, f":{number}"


def read_display_number(fd: int) -> str:
    import select

    text = b""
    deadline = time.monotonic() + TIMEOUT
    while not text.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            raise RuntimeError("Xvfb did not report a display number")
        text += chunk
    return text.decode().strip()


def x_run(display: str, *args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, "DISPLAY": display}, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{args} failed: {result.stderr.strip()}")
    return result.stdout


def windows_named(display: str, name: str) -> list[str]:
    result = subprocess.run(["xdotool", "search", "--name", f"^{name}$"], capture_output=True,
                            text=True, timeout=TIMEOUT, env={**os.environ, "DISPLAY": display},
                            check=False)
    return result.stdout.split()


def wait_for_windows(display: str, name: str, count: int) -> list[str]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = windows_named(display, name)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} windows named {name!r} did not appear")


def press(display: str, window: str, *keys: str) -> None:
    """Focus a window and type keys into it, as a person at the keyboard would."""
    x_run(display, "xdotool", "windowfocus", "--sync", window)
    for key in keys:
        x_run(display, "xdotool", "key", "--clearmodifiers", key)


def type_text(display: str, window: str, text: str) -> None:
    x_run(display, "xdotool", "windowfocus", "--sync", window)
    x_run(display, "xdotool", "type", "--delay", "10", text)


def screenshot(display: str) -> np.ndarray:
    """The whole screen as RGB uint8, through ImageMagick's `import`."""
    from PIL import Image

    result = subprocess.run(["import", "-window", "root", "png:-"], capture_output=True,
                            timeout=TIMEOUT, env={**os.environ, "DISPLAY": display}, check=True)
    with Image.open(io.BytesIO(result.stdout)) as shot:
        return np.asarray(shot.convert("RGB")).copy()


def find_image(screen: np.ndarray, image: np.ndarray) -> list[tuple[int, int]]:
    """Top-left corners where ``image`` (RGB) appears pixel for pixel on the screen."""
    height, width = image.shape[:2]
    room = screen[: screen.shape[0] - height + 1, : screen.shape[1] - width + 1]
    ys, xs = np.nonzero(np.all(room == image[0, 0], axis=-1))
    # Cheap probes on a grid thin out the candidates before the full comparison.
    for py in range(0, height, max(1, height // 8)):
        for px in range(0, width, max(1, width // 8)):
            keep = np.all(screen[ys + py, xs + px] == image[py, px], axis=-1)
            ys, xs = ys[keep], xs[keep]
    return [(int(y), int(x)) for y, x in zip(ys, xs)
            if np.array_equal(screen[y:y + height, x:x + width], image)]


def wait_for_image(display: str, image: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Screenshots until ``image`` is on screen ``count`` times (drawing takes a moment)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = find_image(screenshot(display), image)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def solid(colour: tuple[int, int, int], shape: tuple[int, int] = (300, 400)) -> np.ndarray:
    frame = np.empty(shape + (4,), np.uint8)
    frame[..., :3] = colour
    frame[..., 3] = 255
    return frame


def sample_rgb() -> np.ndarray:
    from shmimage.sample import load_sample

    return load_sample()[..., :3]

