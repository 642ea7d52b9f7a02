"""The `shmimage` command end to end, each step a real subprocess."""
from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shmimage import SharedImage
from shmimage.cli import main
from shmimage.sample import SAMPLE_PATH, load_sample
from workers_cli import (
    HAS_SHM_DIR,
    POSIX_SIGNALS,
    Lines,
    one_line_error,
    run_cli,
    segment_exists,
    start_cli,
    stop,
)

signals = pytest.mark.skipif(not POSIX_SIGNALS, reason="sends POSIX signals to the command")
needs_shm_dir = pytest.mark.skipif(not HAS_SHM_DIR, reason="looks at /dev/shm without attaching")

COMMANDS = ("put", "get", "info", "watch", "ls", "rm", "gc", "viewer", "demo", "bench")


def held_put(key: str, path: Path = SAMPLE_PATH) -> tuple[subprocess.Popen[str], Lines]:
    proc = start_cli("put", str(path), "--key", key)
    try:
        lines = Lines(proc.stdout)
        lines.expect(lambda line: line.startswith("holding"))
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise
    return proc, lines


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA")).copy()


@signals
def test_held_put_is_seen_by_info_ls_get_and_gone_after_ctrl_c(unique_key, tmp_path):
    key = unique_key("put")
    proc, lines = held_put(key)
    try:
        info = run_cli("info", "--key", key)
        assert info.returncode == 0, info.stderr
        assert key in info.stdout and "400x300x4 uint8" in info.stdout
        facts = json.loads(run_cli("info", "--key", key, "--json").stdout)
        assert facts["frame"]["shape"] == [300, 400, 4]
        assert facts["frame"]["generation"] == 1
        assert facts["frame"]["writer_pid"] == proc.pid
        assert facts["attachments"] >= 1 and facts["persistent"] is False

        listed = {row["key"]: row for row in json.loads(run_cli("ls", "--json").stdout)}
        assert listed[key]["native_key"] == facts["native_key"]
        assert listed[key]["persistent"] is False
        assert key in run_cli("ls").stdout

        out = tmp_path / "frame.png"
        got = run_cli("get", "--key", key, "-o", str(out))
        assert got.returncode == 0, got.stderr
        assert np.array_equal(decode(out), load_sample())
    finally:
        code = stop(proc, signal.SIGINT)
    assert code == 0
    assert "released" in lines.expect(lambda line: line == "released")
    assert not segment_exists(key)
    after = run_cli("get", "--key", key, "-o", str(tmp_path / "none.png"))
    assert after.returncode == 1
    assert "no shared image" in one_line_error(after)
    assert not (tmp_path / "none.png").exists()


@signals
def test_sigterm_releases_the_segment_too(unique_key):
    key = unique_key("term")
    proc, _ = held_put(key)
    try:
        assert segment_exists(key)
    finally:
        code = stop(proc, signal.SIGTERM)
    assert code == 0
    assert not segment_exists(key)


def test_persist_outlives_put_until_rm(unique_key, tmp_path):
    key = unique_key("persist")
    put = run_cli("put", str(SAMPLE_PATH), "--key", key, "--persist")
    assert put.returncode == 0, put.stderr
    try:
        listed = {row["key"]: row for row in json.loads(run_cli("ls", "--json").stdout)}
        assert listed[key]["persistent"] is True
        got = run_cli("get", "--key", key, "-o", str(tmp_path / "kept.png"))
        assert got.returncode == 0, got.stderr
        assert np.array_equal(decode(tmp_path / "kept.png"), load_sample())
    finally:
        removed = run_cli("rm", key)
    assert removed.returncode == 0, removed.stderr
    assert not segment_exists(key)
    again = run_cli("rm", key)
    assert again.returncode == 1
    assert key in one_line_error(again)


@pytest.mark.parametrize("dtype, shape", [("uint16", (20, 30)), ("float32", (8, 6, 3)),
                                          ("uint8", (5, 7, 1))])
def test_npy_round_trip_keeps_shape_and_dtype(unique_key, tmp_path, dtype, shape):
    key = unique_key("npy")
    frame = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    np.save(tmp_path / "in.npy", frame)
    assert run_cli("put", str(tmp_path / "in.npy"), "--key", key, "--persist").returncode == 0
    try:
        got = run_cli("get", "--key", key, "-o", str(tmp_path / "out.npy"))
        assert got.returncode == 0, got.stderr
        back = np.load(tmp_path / "out.npy")
        assert back.dtype == frame.dtype and np.array_equal(back, frame)
        as_png = run_cli("get", "--key", key, "-o", str(tmp_path / "out.png"))
        assert as_png.returncode == 0, as_png.stderr
    finally:
        run_cli("rm", key)


def test_get_to_stdout_writes_png(unique_key):
    key = unique_key("stdout")
    assert run_cli("put", str(SAMPLE_PATH), "--key", key, "--persist").returncode == 0
    try:
        got = subprocess.run([sys.executable, "-m", "shmimage", "get", "--key", key, "-o", "-"],
                             capture_output=True, timeout=60, check=False)
        assert got.returncode == 0, got.stderr
        with Image.open(io.BytesIO(got.stdout)) as image:
            assert image.format == "PNG"
            assert np.array_equal(np.asarray(image.convert("RGBA")), load_sample())
    finally:
        run_cli("rm", key)


@signals
@needs_shm_dir
def test_gc_removes_what_a_killed_put_left(unique_key):
    key = unique_key("gc")
    proc, _ = held_put(key)
    stop(proc, signal.SIGKILL)
    assert segment_exists(key)
    gc = run_cli("gc")
    assert gc.returncode == 0, gc.stderr
    assert not segment_exists(key)
    assert run_cli("get", "--key", key, "-o", "unused.png").returncode == 1


def test_error_paths_are_one_line_exit_1(unique_key, tmp_path):
    missing = unique_key("missing")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    truncated = tmp_path / "half.png"
    truncated.write_bytes(SAMPLE_PATH.read_bytes()[:400])
    cases = [
        ("put", str(tmp_path / "nowhere.png"), "--key", missing),
        ("put", str(text), "--key", missing),
        ("put", str(truncated), "--key", missing),
        ("put", str(SAMPLE_PATH), "--key", ""),
        ("get", "--key", missing, "-o", str(tmp_path / "x.png")),
        ("info", "--key", missing),
        ("info", "--key", missing, "--json"),
        ("rm", missing),
        ("viewer", "--key", missing),
    ]
    for args in cases:
        result = run_cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert one_line_error(result).startswith("shmimage: error: "), args
    assert not segment_exists(missing)


def test_get_to_an_unknown_format_is_one_line(unique_key, tmp_path):
    key = unique_key("fmt")
    assert run_cli("put", str(SAMPLE_PATH), "--key", key, "--persist").returncode == 0
    try:
        result = run_cli("get", "--key", key, "-o", str(tmp_path / "frame.nosuchformat"))
        assert result.returncode == 1
        assert "unknown image format" in one_line_error(result)
    finally:
        run_cli("rm", key)


@pytest.mark.parametrize("args", [(), ("bogus",), ("put",), ("rm",), ("ls", "--bogus"),
                                  ("put", "x.png", "--persist", "--nope"),
                                  ("get", "--backend", "carrier-pigeon")])
def test_usage_errors_exit_2(args):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "usage:" in result.stderr


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_main_returns_exit_codes_in_process(capsys):
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2
    assert main(["rm", "shmi-test-never-created-key"]) == 1
    assert capsys.readouterr().err.count("\n") >= 2


@signals
def test_qt_put_and_get_speak_qts_format(unique_key, tmp_path):
    qt = pytest.importorskip("shmimage.qt", reason="the Qt format module is not built")
    key = unique_key("qt")
    proc = start_cli("put", str(SAMPLE_PATH), "--key", key, "--qt")
    try:
        Lines(proc.stdout).expect(lambda line: line.startswith("holding"))
        got = run_cli("get", "--key", key, "--qt", "-o", str(tmp_path / "qt.png"))
        assert got.returncode == 0, got.stderr
        assert np.array_equal(decode(tmp_path / "qt.png"), load_sample())
        assert not segment_exists(key), "--qt must not touch shmimage's own segment"
    finally:
        code = stop(proc, signal.SIGINT)
        leftover = qt.QtSharedImage.remove(key)
    assert code == 0 and not leftover
    after = run_cli("get", "--key", key, "--qt", "-o", str(tmp_path / "none.png"))
    assert after.returncode == 1
    assert "no Qt shared memory segment" in one_line_error(after)


def test_qt_put_refuses_persist():
    result = run_cli("put", str(SAMPLE_PATH), "--qt", "--persist", "--key", "shmi-test-qt-nop")
    assert result.returncode == 1
    assert "--persist" in one_line_error(result)


def test_a_segment_without_a_frame(unique_key, tmp_path):
    key = unique_key("noframe")
    with SharedImage(key) as image:
        with pytest.raises(RuntimeError), image.loan((4, 4, 4)):
            raise RuntimeError("the writer gave up: nothing is published")
        info = run_cli("info", "--key", key)
        assert info.returncode == 0, info.stderr
        assert "none published yet" in info.stdout
        assert json.loads(run_cli("info", "--key", key, "--json").stdout)["frame"] is None
        got = run_cli("get", "--key", key, "-o", str(tmp_path / "none.png"))
        assert got.returncode == 1
        assert "nothing published" in one_line_error(got)


def test_the_console_script_runs_the_same_main():
    script = shutil.which("shmimage", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("no shmimage console script next to this Python (not pip-installed)")
    result = subprocess.run([script, "ls", "--json"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def test_bench_is_handed_its_own_arguments():
    pytest.importorskip("shmimage.bench", reason="the benchmark suite is not in this tree")
    result = run_cli("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout and "--plot" in result.stdout
