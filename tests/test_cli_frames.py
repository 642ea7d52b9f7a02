"""`shmimage put`/`get` keep every frame exactly: 16-bit and 1-bit images, stdin,
--mode, --wait, and a reader that closes the pipe early."""
from __future__ import annotations

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from workers_cli import TIMEOUT, cli_env, one_line_error, run_cli, start_cli, stop

POSIX_SHELL = sys.platform != "win32"


def put_persist(path: str, key: str, *extra: str, stdin: bytes | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "shmimage", "put", path, key, "--persist",
                             *extra], input=stdin, capture_output=True, env=cli_env(),
                            timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def decoded(path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image.copy()


def test_sixteen_bit_png_put_get_is_bit_exact(unique_key, tmp_path) -> None:
    key = unique_key("depth16")
    depth = (np.arange(48 * 64, dtype=np.uint32) * 21 % 65536).astype(np.uint16).reshape(48, 64)
    depth[0, :4] = [0, 1000, 30000, 65535]
    Image.fromarray(depth).save(tmp_path / "depth16.png")
    try:
        said = put_persist(str(tmp_path / "depth16.png"), key)
        assert "64x48 uint16" in said
        got = run_cli("get", key, "-o", str(tmp_path / "back.png"))
        assert got.returncode == 0, got.stderr
        back = decoded(tmp_path / "back.png")
        assert back.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(back), depth)
        assert run_cli("get", key, "-o", str(tmp_path / "back.npy")).returncode == 0
        npy = np.load(tmp_path / "back.npy")
        assert npy.dtype == np.uint16 and np.array_equal(npy, depth)
    finally:
        run_cli("rm", key)


def test_one_bit_mask_put_get_stays_one_bit(unique_key, tmp_path) -> None:
    key = unique_key("mask")
    mask = np.indices((20, 30)).sum(axis=0) % 4 == 1
    Image.fromarray(mask).save(tmp_path / "mask.png")
    try:
        assert "30x20 bool" in put_persist(str(tmp_path / "mask.png"), key)
        assert run_cli("get", key, "-o", str(tmp_path / "back.png")).returncode == 0
        back = decoded(tmp_path / "back.png")
        assert back.mode == "1"
        np.testing.assert_array_equal(np.asarray(back), mask)
    finally:
        run_cli("rm", key)


def test_put_reads_encoded_bytes_from_stdin(unique_key, tmp_path) -> None:
    key = unique_key("stdin")
    rgb = np.random.default_rng(1).integers(0, 255, (16, 24, 3), np.uint8)
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, "PNG")
    try:
        said = put_persist("-", key, stdin=data.getvalue())
        assert "standard input" in said and "24x16x3 uint8" in said
        assert run_cli("get", key, "-o", str(tmp_path / "back.npy")).returncode == 0
        np.testing.assert_array_equal(np.load(tmp_path / "back.npy"), rgb)
    finally:
        run_cli("rm", key)
    garbage = subprocess.run([sys.executable, "-m", "shmimage", "put", "-", key],
                             input=b"\x00garbage\xff" * 1000, capture_output=True,
                             env=cli_env(), timeout=TIMEOUT, check=False)
    assert garbage.returncode == 1
    line = one_line_error(subprocess.CompletedProcess(
        garbage.args, 1, garbage.stdout.decode(), garbage.stderr.decode()))
    assert "not an image" in line and "garbage" not in line and len(line) < 200


def test_put_mode_converts(unique_key, tmp_path) -> None:
    key = unique_key("mode")
    rgb = np.random.default_rng(2).integers(0, 255, (10, 12, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    try:
        assert "12x10x4 uint8" in put_persist(str(tmp_path / "rgb.png"), key, "--mode", "RGBA")
        assert "12x10 uint8" in put_persist(str(tmp_path / "rgb.png"), key, "--mode", "L")
        bad = run_cli("put", str(tmp_path / "rgb.png"), key, "--mode", "NOPE", "--persist")
        assert bad.returncode == 1 and "NOPE" in one_line_error(bad)
    finally:
        run_cli("rm", key)


def test_get_of_a_frame_no_image_format_holds_writes_8_bit_and_says_so(unique_key,
                                                                        tmp_path) -> None:
    key = unique_key("labels")
    labels = (np.arange(30 * 40).reshape(30, 40) % 7 - 3).astype(np.int16)
    np.save(tmp_path / "labels.npy", labels)
    try:
        put_persist(str(tmp_path / "labels.npy"), key)
        got = run_cli("get", key, "-o", str(tmp_path / "labels.png"))
        assert got.returncode == 0, got.stderr
        assert "note:" in got.stderr and ".npy" in got.stderr and "Traceback" not in got.stderr
        shown = np.asarray(decoded(tmp_path / "labels.png").convert("L"))
        assert shown.min() == 0 and shown.max() == 255  # stretched from -3..3
        assert run_cli("get", key, "-o", str(tmp_path / "labels.npy")).returncode == 0
        np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), labels)
    finally:
        run_cli("rm", key)


@pytest.mark.skipif(not POSIX_SHELL, reason="a POSIX shell pipeline")
def test_get_to_a_pipe_closed_early_is_quiet(unique_key, tmp_path) -> None:
    key = unique_key("head")
    noise = np.random.default_rng(5).integers(0, 255, (512, 512, 3), np.uint8)
    np.save(tmp_path / "noise.npy", noise)  # ~800 KB of PNG: far more than a pipe holds
    try:
        put_persist(str(tmp_path / "noise.npy"), key)
        script = (f'"{sys.executable}" -m shmimage get "{key}" -o - 2>"{tmp_path}/err" '
                  f'| head -c 10 >"{tmp_path}/head"; echo "${{PIPESTATUS[0]}}"')
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                env=cli_env(), timeout=TIMEOUT, check=False)
        assert (tmp_path / "head").read_bytes() == b"\x89PNG\r\n\x1a\n\x00\x00"
        assert (tmp_path / "err").read_text() == ""
        assert result.stdout.strip() == "0"
    finally:
        run_cli("rm", key)


def test_get_wait_before_a_put(unique_key, tmp_path) -> None:
    key = unique_key("wait")
    frame = np.arange(60, dtype=np.float32).reshape(6, 10)
    np.save(tmp_path / "frame.npy", frame)
    getter = start_cli("get", key, "--wait", "30", "-o", str(tmp_path / "got.npy"))
    try:
        time.sleep(0.5)  # the key does not exist yet: get must be waiting, not failing
        assert getter.poll() is None, getter.stderr.read() if getter.stderr else ""
        put_persist(str(tmp_path / "frame.npy"), key)
        _out, err = getter.communicate(timeout=TIMEOUT)
        assert getter.returncode == 0, err
        np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), frame)
    finally:
        stop(getter)
        run_cli("rm", key)


def test_get_wait_gives_up_with_one_line(unique_key, tmp_path) -> None:
    key = unique_key("wait-none")
    started = time.monotonic()
    result = run_cli("get", key, "--wait", "0.3", "-o", str(tmp_path / "none.png"))
    assert time.monotonic() - started >= 0.3
    assert result.returncode == 1
    line = one_line_error(result)
    assert key in line and "0.3 s" in line
    assert not (tmp_path / "none.png").exists()
    bad = run_cli("get", key, "--wait", "-1")
    assert bad.returncode == 2 and "usage: shmimage get" in bad.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="signals the held put")
def test_qt_put_from_stdin(unique_key, tmp_path) -> None:
    qt = pytest.importorskip("shmimage.qt", reason="the Qt format module is not built")
    import signal

    from workers_cli import Lines

    key = unique_key("qt-stdin")
    rgb = np.random.default_rng(6).integers(0, 255, (12, 16, 3), np.uint8)
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, "PNG")
    proc = subprocess.Popen([sys.executable, "-m", "shmimage", "put", "-", key, "--qt"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=False, env=cli_env())
    try:
        proc.stdin.write(data.getvalue())
        proc.stdin.close()
        lines = Lines(io.TextIOWrapper(proc.stdout))
        assert "16x12x4 uint8" in lines.expect(lambda line: line.startswith("published"))
        lines.expect(lambda line: line.startswith("holding"))
        got = run_cli("get", key, "--qt", "-o", str(tmp_path / "qt.npy"))
        assert got.returncode == 0, got.stderr
        back = np.load(tmp_path / "qt.npy")
        np.testing.assert_array_equal(back[..., :3], rgb)
        assert (back[..., 3] == 255).all()
    finally:
        stop(proc, signal.SIGINT)
        qt.QtSharedImage.remove(key)
