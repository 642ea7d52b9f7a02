"""The same command line for every command: positional KEY or --key, --version,
each command's own usage on errors, `watch`, and `ls` that says what it reclaimed
and keeps its table whole for odd keys."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import shmimage
from shmimage import SharedImage, SharedMemory
from shmimage.sample import SAMPLE_PATH
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


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"shmimage {shmimage.__version__}"


def test_positional_key_and_key_option_are_the_same(unique_key, tmp_path) -> None:
    key = unique_key("positional")
    put = run_cli("put", str(SAMPLE_PATH), key, "--persist")
    assert put.returncode == 0, put.stderr
    try:
        for args in (("info", key), ("info", "--key", key), ("info", "--json", key),
                     ("info", key, "--key", key)):
            result = run_cli(*args)
            assert result.returncode == 0, (args, result.stderr)
            assert key in result.stdout
        for i, args in enumerate((("get", key), ("get", "--key", key), ("get", "-k", key))):
            out = tmp_path / f"out{i}.npy"
            result = run_cli(*args, "-o", str(out))
            assert result.returncode == 0, (args, result.stderr)
            assert np.load(out).shape == (300, 400, 4)
    finally:
        removed = run_cli("rm", "--key", key)
    assert removed.returncode == 0, removed.stderr
    assert not segment_exists(key)


@pytest.mark.parametrize("args, command", [
    (("get", "--bogus"), "get"),
    (("info", "a", "b"), "info"),
    (("info", "a", "--key", "b"), "info"),
    (("watch", "--nope"), "watch"),
    (("rm",), "rm"),
    (("put",), "put"),
    (("put", "x.png", "--persist", "--nope"), "put"),
    (("get", "--wait", "soon"), "get"),
    (("ls", "extra"), "ls"),
])
def test_usage_errors_show_that_commands_usage(args, command) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"usage: shmimage {command} "), result.stderr
    assert f"shmimage {command}: error:" in result.stderr


def test_errors_name_the_key_in_one_line(unique_key) -> None:
    key = unique_key("absent")
    for args in (("get", key), ("info", key), ("rm", key), ("get", "--key", key)):
        result = run_cli(*args)
        assert result.returncode == 1
        line = one_line_error(result)
        assert line.startswith("shmimage: error: ") and key in line


@signals
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_watch_prints_one_line_per_frame(unique_key, as_json) -> None:
    key = unique_key("watch")
    with SharedImage(key) as image:
        image.publish(np.zeros((6, 8, 3), np.uint8))
        watcher = start_cli("watch", key, *(["--json"] if as_json else []))
        try:
            lines = Lines(watcher.stdout)
            first = lines.expect(lambda line: bool(line.strip()))  # the current frame first
            assert (json.loads(first)["generation"] if as_json
                    else int(first.split()[1])) == 1
            seen = []
            for generation in (2, 3, 4):
                assert image.publish(np.full((6, 8), generation, np.uint16)) == generation
                seen.append(lines.expect(lambda line: bool(line.strip())))
        finally:
            code = stop(watcher, signal.SIGINT)
        stderr = watcher.stderr.read() if watcher.stderr else ""
    assert code == 0 and "Traceback" not in stderr
    if as_json:
        rows = [json.loads(line) for line in seen]
        assert [row["generation"] for row in rows] == [2, 3, 4]
        assert all(row["shape"] == [6, 8] and row["dtype"] == "uint16" for row in rows)
        assert all(row["latency_ms"] >= 0 for row in rows)
        assert all(row["fps"] is None or row["fps"] > 0 for row in rows)
        assert rows[-1]["fps"] is not None
    else:
        for generation, line in zip((2, 3, 4), seen):
            assert line.startswith(f"generation {generation} ") and "8x6 uint16" in line
            assert " fps " in line and "latency" in line and line.endswith(" ms")


@signals
def test_watch_waits_for_the_key_to_appear(unique_key) -> None:
    key = unique_key("watch-late")
    watcher = start_cli("watch", key)
    try:
        lines = Lines(watcher.stdout)
        with SharedImage(key) as image:
            image.publish(np.zeros((2, 3), np.uint8))
            line = lines.expect(lambda text: text.startswith("generation "))
            assert "3x2 uint8" in line
    finally:
        assert stop(watcher, signal.SIGTERM) == 0


def table_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


def test_ls_escapes_odd_keys_and_keeps_its_table_whole(unique_key) -> None:
    newline_key = unique_key("new\nline\t")
    long_key = unique_key("long" * 60)
    with SharedImage(newline_key) as a, SharedImage(long_key) as b:
        a.publish(np.zeros((2, 2), np.uint8))
        b.publish(np.zeros((2, 2), np.uint8))
        result = run_cli("ls")
        assert result.returncode == 0, result.stderr
        lines = table_lines(result.stdout)
        header = lines[0]
        assert header.startswith("KEY")
        ours = [line for line in lines if SharedMemory(newline_key).native_key in line]
        assert len(ours) == 1 and "new\\nline\\t" in ours[0]
        long_row = [line for line in lines if SharedMemory(long_key).native_key in line]
        assert len(long_row) == 1 and len(long_row[0]) < 200
        native_column = header.index("NATIVE NAME")
        for row in ours + long_row:  # columns still line up
            assert row[native_column:].startswith("/shmi_")
        listed = {row["native_key"]: row for row in json.loads(run_cli("ls", "--json").stdout)}
        assert listed[SharedMemory(newline_key).native_key]["key"] == newline_key


@signals
@pytest.mark.skipif(not HAS_SHM_DIR, reason="looks at /dev/shm without attaching")
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_ls_says_what_stale_segments_it_reclaimed(unique_key, as_json) -> None:
    key = unique_key("stale")
    native = SharedMemory(key).native_key
    held = start_cli("put", str(SAMPLE_PATH), key)
    try:
        Lines(held.stdout).expect(lambda line: line.startswith("holding"))
    finally:
        stop(held, signal.SIGKILL)
    assert segment_exists(key)
    result = run_cli("ls", *(["--json"] if as_json else []))
    assert result.returncode == 0, result.stderr
    if as_json:
        rows = [row for row in json.loads(result.stdout) if row["native_key"] == native]
        assert rows == [{"key": None, "native_key": native, "size": None, "attachments": 0,
                         "persistent": False, "reclaimed": True}]
    else:
        assert f"reclaimed stale {native}" in result.stdout
    assert not segment_exists(key)


def test_viewer_and_demo_take_a_positional_key_too(unique_key, tmp_path) -> None:
    key = unique_key("demo-positional")
    viewer = run_cli("viewer", key)  # no display in run_cli's environment
    assert viewer.returncode == 1 and "DISPLAY" in one_line_error(viewer)
    demo = run_cli("demo", key, "--headless", "-o", str(tmp_path / "demo.png"))
    assert demo.returncode == 0, demo.stderr
    assert "all" in demo.stdout and (tmp_path / "demo.png").exists()
    assert not segment_exists(key)
