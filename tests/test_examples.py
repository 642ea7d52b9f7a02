"""Every script in examples/ runs headless, on a key of its own, and does its job."""
from __future__ import annotations

import os
import re
import select
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


def first_line(process: subprocess.Popen[str]) -> str:
    """The process's first line of output, within TIMEOUT (it is still running)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
    if not ready:
        process.kill()
        pytest.fail(f"{process.args} printed nothing within {TIMEOUT} s")
    return process.stdout.readline()


def decoded_rgb(video: Path) -> list[np.ndarray]:
    """Every frame of `video` as OpenCV decodes it, in RGB: what the camera shares."""
    import cv2
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


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
    lines = out.splitlines()
    assert lines[0] == f"recording {key!r}" and lines[-1] == "recorded 4 frames, dropped 0"
    assert len(files) == 4 and lines[1:-1] == [str(f) for f in files]
    indices = [int(path.stem.split("_")[1]) for path in files]
    assert indices == list(range(indices[0], indices[0] + 4))  # lossless: no gap
    for path, index in zip(files, indices):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), drawn(index))
    finish(process)


def test_camera_decodes_a_video_into_a_lossless_recorder(unique_key, tmp_path: Path) -> None:
    pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless, the test extra)")
    key, video, out_dir = unique_key("camera"), tmp_path / "clip.avi", tmp_path / "frames"
    # The recorder takes 0.1 s per frame, the camera decodes at the video's
    # 25 fps and the store keeps 16 frames: only backpressure from the
    # lossless subscription keeps the 24 frames beyond the history from loss.
    recorder = start("recorder.py", "--key", key, "--out", str(out_dir), "--delay", "0.1")
    try:
        assert first_line(recorder) == f"recording {key!r}\n"
        camera = start("camera.py", "--key", key, "--video", str(video), "--make", "40",
                       "--history", "16", "--linger", "0.5")
        assert finish(camera).strip() == f"published 40 frames to {key!r}"
        out = finish(recorder)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.communicate()
    assert out.splitlines()[-1] == "recorded 40 frames, dropped 0"
    expected = decoded_rgb(video)
    assert len(expected) == 40
    files = sorted(out_dir.glob("frame_*.png"))
    assert [int(path.stem.split("_")[1]) for path in files] == list(range(40))  # meta index
    for path, frame in zip(files, expected):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), frame, err_msg=str(path))
    assert len({frame.tobytes() for frame in expected}) == 40  # the frames really differ


def test_camera_into_an_async_lossy_consumer(unique_key, tmp_path: Path) -> None:
    pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless, the test extra)")
    key, video = unique_key("camera"), tmp_path / "clip.avi"
    consumer = start("async_consumer.py", "--key", key)
    try:
        assert first_line(consumer) == f"following {key!r}\n"
        camera = start("camera.py", "--key", key, "--video", str(video), "--make", "30",
                       "--linger", "0.5")
        assert finish(camera).strip() == f"published 30 frames to {key!r}"
        out = finish(consumer)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.communicate()
    expected = decoded_rgb(video)
    lines = re.findall(r"generation (\d+) index (\d+) shape \((\d+), (\d+), 3\) sum (\d+)", out)
    consumed, dropped = map(int, re.findall(r"consumed (\d+) frames, dropped (\d+)", out)[0])
    assert consumed == len(lines) >= 1 and consumed + dropped == 30, out
    generations = [int(g) for g, *_ in lines]
    assert generations == sorted(set(generations))  # in order, each once
    for generation, index, height, width, total in lines:
        frame = expected[int(index)]
        assert int(generation) - 1 == int(index)   # meta index travels with its frame
        assert (int(height), int(width)) == frame.shape[:2]
        assert int(total) == int(frame.sum(dtype=np.uint64))  # the decoded pixels


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
