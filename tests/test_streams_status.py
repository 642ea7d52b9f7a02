"""status() and `shmimage info` list every subscriber, lossless and lossy,
with its pid, mode and lag; a lossy one never takes an entry a lossless
one needs."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys

from shmimage import SharedImage
from workers_cli import TIMEOUT, cli_env
from workers_image import WAIT
from workers_streams import hold_lossless, index_frame

ctx = multiprocessing.get_context("spawn")


def receive(conn, what: str):
    assert conn.poll(WAIT), f"child sent no {what}"
    msg = conn.recv()
    assert not (isinstance(msg, tuple) and msg[0] == "error"), msg
    return msg


def start_holder(procs, key: str, lossless: bool):
    conn, child = ctx.Pipe()
    take, take_child = ctx.Pipe()
    proc = procs.start(hold_lossless, key, child, take_child, lossless)
    assert receive(conn, "ready") == "ready"
    return proc, conn, take


def listed(image: SharedImage) -> set[tuple[int, str, int]]:
    return {(s["pid"], s["mode"], s["lag"]) for s in image.status()["subscribers"]}


def test_lossy_and_lossless_subscribers_are_listed(procs, unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=4) as writer:
        writer.publish(index_frame(1))
        strict, _, strict_take = start_holder(procs, key, True)
        loose, loose_conn, loose_take = start_holder(procs, key, False)
        writer.publish(index_frame(2))
        writer.publish(index_frame(3))
        loose_take.send(1)
        assert receive(loose_conn, "generation") == 2
        assert listed(writer) == {(strict.pid, "lossless", 2), (loose.pid, "lossy", 1)}
        info = subprocess.run([sys.executable, "-m", "shmimage", "info", key],
                              capture_output=True, text=True, env=cli_env(), timeout=TIMEOUT,
                              check=False)
        assert info.returncode == 0, info.stderr
        assert f"pid {strict.pid} (lossless, lag 2)" in info.stdout
        assert f"pid {loose.pid} (lossy, lag 1)" in info.stdout
        os.kill(loose.pid, signal.SIGKILL)
        loose.join(WAIT)
        assert listed(writer) == {(strict.pid, "lossless", 2)}
        strict_take.send(None)
        strict.join(WAIT)
        assert listed(writer) == set()


def test_lossy_subscribers_give_way_to_lossless_ones(unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(1))
        lossy = [SharedImage(key).subscribe() for _ in range(8)]
        assert [s["mode"] for s in writer.status()["subscribers"]] == ["lossy"] * 8
        lossless = [SharedImage(key).subscribe(lossless=True) for _ in range(64)]
        modes = [s["mode"] for s in writer.status()["subscribers"]]
        assert modes == ["lossless"] * 64
        writer.publish(index_frame(2))
        for sub in lossy:  # unlisted, still working
            assert sub.next(WAIT).info.generation == 2
            assert sub.dropped == 0
        for sub in lossless:
            sub.close()
        unlisted = lossy.pop()
        writer.publish(index_frame(3))
        assert unlisted.next(WAIT).info.generation == 3
        assert listed(writer) == set()
        for sub in lossy + [unlisted]:
            sub.close()
        assert writer.status()["subscribers"] == []
