"""`shmimage serve` and `shmimage relay` as a user runs them."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from shmimage import SharedImage
from workers_cli import Lines, cli_env, one_line_error, run_cli, segment_exists, start_cli, stop
from workers_net import indexed, wait_for_value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_pyzmq_is_never_imported_by_shmimage_or_other_commands(unique_key):
    code = ("import sys, shmimage, shmimage.cli; shmimage.cli.main(['ls']); "
            "print('zmq' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=cli_env(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False"


@pytest.mark.parametrize("command", [["serve", "k"], ["relay", "tcp://127.0.0.1:9"]])
def test_without_pyzmq_a_one_line_error_names_the_extra(command):
    code = ("import sys; sys.modules['zmq'] = None; from shmimage.cli import main; "
            f"sys.exit(main({command!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=cli_env(), timeout=60, check=False)
    assert result.returncode == 1
    assert "shmimage[net]" in one_line_error(result)


pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")


def test_serve_and_relay_commands_move_frames_and_stop_cleanly(unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    address = f"tcp://127.0.0.1:{free_port()}"
    with SharedImage(src) as writer:
        writer.publish(indexed(1))
        server = start_cli("serve", src, "--bind", address, "--progress")
        relay = start_cli("relay", address, "--key", dst, "--lossless", "--progress")
        try:
            served, relayed = Lines(server.stdout), Lines(relay.stdout)
            served.expect(lambda line: line.startswith("serving"))
            relayed.expect(lambda line: line.startswith("relaying"))
            with SharedImage(dst) as reader:
                wait_for_value(reader, 1)
                for index in range(2, 12):
                    writer.publish(indexed(index))
                    wait_for_value(reader, index)
            line = relayed.expect(lambda text: "fps" in text)
            assert "MB/s" in line and "dropped 0" in line
            assert "relays 1" in served.expect(lambda text: "relays 1" in text)
            assert stop(relay, signal.SIGINT) == 0
            assert stop(server, signal.SIGTERM) == 0
            assert relayed.expect(lambda text: text.startswith("stopped:")).startswith(
                "stopped: 11 frames")
            served.expect(lambda text: text.startswith("stopped:"))
            assert not segment_exists(dst)
        finally:
            stop(relay, signal.SIGKILL)
            stop(server, signal.SIGKILL)


def test_serve_errors_are_one_line(unique_key, tmp_path):
    key = unique_key()
    cases = [
        (["serve", key, "--bind", "tcp://0.0.0.0:5999"], "--insecure"),
        (["serve", key, "--bind", "nonsense"], "not a ZeroMQ endpoint"),
        (["serve", key, "--compress", "gzip"], "unknown compression"),
        (["serve", key, "--compress", "jpeg:200"], "quality"),
        (["serve", key, "--curve-dir", str(tmp_path)], "server.key_secret"),
        (["relay", "tcp://127.0.0.1:9", "--curve-dir", str(tmp_path)], "server.key"),
        (["relay", "camhost:5560"], "not a ZeroMQ endpoint"),
    ]
    for args, words in cases:
        result = run_cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert words in one_line_error(result), args


def test_a_port_in_use_is_one_line(unique_key):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("serve", unique_key(), "--bind",
                         f"tcp://127.0.0.1:{busy.getsockname()[1]}")
    assert result.returncode == 1
    assert "cannot serve" in one_line_error(result)


def test_relaying_into_the_served_segment_itself_is_refused(unique_key):
    # One host, one /dev/shm, no --key: the relay would feed the server its own frames.
    key = unique_key("loop")
    address = f"tcp://127.0.0.1:{free_port()}"
    with SharedImage(key) as writer:
        writer.publish(indexed(1))
        server = start_cli("serve", key, "--bind", address)
        try:
            Lines(server.stdout).expect(lambda line: line.startswith("serving"))
            result = run_cli("relay", address)
            assert result.returncode == 1
            assert "--key" in one_line_error(result)
            assert writer.info().generation == 1  # nothing was written back
        finally:
            assert stop(server) == 0
