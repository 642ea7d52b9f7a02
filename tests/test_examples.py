"""Every script in examples/ runs headless, on a key of its own, and does its job."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60.0


def start(script: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args], text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})


def finish(process: subprocess.Popen[str]) -> str:
    try:
        out, err = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{process.args} hung; stderr: {err[-2000:]}")
    assert process.returncode == 0, f"{process.args} exited {process.returncode}: {err[-2000:]}"
    return out


@pytest.fixture
def producer(unique_key) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The camera-style producer on a fresh key: 150 frames at 50 fps."""
    key = unique_key("examples")
    process = start("producer.py", "--key", key, "--frames", "150", "--fps", "50",
                    "--size", "48x64", "--linger", "0.5")
    try:
        yield key, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def drawn(index: int) -> np.ndarray:
    """What producer.py draws as frame `index`, computed here independently."""
    frame = np.empty((48, 64, 3), np.uint8)
    frame[:] = np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None]
    x = (index * 8) % 64
    frame[:, x:x + 8] = (255, 64, 0)
    return frame


def test_producer_and_consumer(producer) -> None:
    key, process = producer
    out = finish(start("consumer.py", "--key", key, "--frames", "5"))
    lines = re.findall(r"generation (\d+) index (\d+) mean ([\d.]+)", out)
    assert len(lines) == 5, out
    generations = [int(g) for g, _, _ in lines]
    indices = [int(i) for _, i, _ in lines]
    assert generations == sorted(set(generations))  # strictly increasing
    assert [g - 1 for g in generations] == indices   # meta index travels with its frame
    assert "published 150 frames" in finish(process)


def test_recorder_writes_the_published_pixels(producer, tmp_path: Path) -> None:
    key, process = producer
    out = finish(start("recorder.py", "--key", key, "--out", str(tmp_path), "--frames", "4"))
    files = sorted(tmp_path.glob("frame_*.png"))
    assert len(files) == 4 and out.split() == [str(f) for f in files]
    for path in files:
        index = int(path.stem.split("_")[1])
        np.testing.assert_array_equal(np.asarray(Image.open(path)), drawn(index))
    finish(process)


def test_qt_window_shows_frames(producer) -> None:
    pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed")
    key, process = producer
    out = finish(start("qt_window.py", "--key", key, "--frames", "3",
                       QT_QPA_PLATFORM="offscreen"))
    assert "shown 3 frames, last 64x48" in out
    finish(process)


def test_two_hosts_serve_and_relay(unique_key) -> None:
    pytest.importorskip("zmq", reason="pyzmq (the net extra) is not installed")
    key = unique_key("hosts")
    unique_key.keys.append(key + "-remote")  # checked for leftovers too
    out = finish(start("two_hosts.py", "--key", key, "--frames", "3"))
    for index in range(3):
        assert f"frame {index} arrived: (240, 320, 3) value {index}" in out
    assert "server exit 0, relay exit 0" in out


def test_torch_consumer(producer) -> None:
    pytest.importorskip("torch", reason="torch is not installed (examples/torch_consumer.py)")
    key, process = producer
    out = finish(start("torch_consumer.py", "--key", key, "--frames", "3"))
    assert len(re.findall(r"tensor \(3, 48, 64\) mean 0\.\d+", out)) == 3, out
    finish(process)
