"""The blocking serve() and relay() end on SIGTERM or Ctrl+C and clean up after themselves."""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket

import pytest

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

from shmimage import SharedImage, SharedMemory
from workers_net import blocking, indexed, wait_for_value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_blocking_serve_and_relay_return_on_a_signal(procs, unique_key, sig):
    src, dst = unique_key("src"), unique_key("dst")
    address = f"tcp://127.0.0.1:{free_port()}"
    results = multiprocessing.get_context("spawn").Queue()
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(1))
        server = procs.start(blocking, "serve", results, src, address)
        relay = procs.start(blocking, "relay", results, address, dst)
        wait_for_value(reader, 1)
        writer.publish(indexed(2))
        wait_for_value(reader, 2)
        reader.detach()
        for proc in (relay, server):
            os.kill(proc.pid, sig)
            proc.join(30)
            assert proc.exitcode == 0
        finals = dict(results.get(timeout=10) for _ in range(2))
    assert finals["serve"]["frames"] == 2 and finals["relay"]["frames"] == 2
    assert not os.path.exists("/dev/shm/" + SharedMemory(dst).native_key.lstrip("/"))
