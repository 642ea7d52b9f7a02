"""`shmimage watch --lossless`: every frame, in order, with the dropped count."""
from __future__ import annotations

import json
import subprocess
import sys
import time

from shmimage import SharedImage
from workers_cli import TIMEOUT, cli_env
from workers_streams import index_frame


def test_watch_lossless_prints_every_frame_then_ends_with_the_stream(unique_key):
    key = unique_key("streams")
    with SharedImage(key, history=2) as writer:
        writer.publish(index_frame(1))
        proc = subprocess.Popen([sys.executable, "-m", "shmimage", "watch", key, "--lossless",
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=cli_env())
        try:
            deadline = time.monotonic() + TIMEOUT
            while not writer.status()["subscribers"]:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
                time.sleep(0.02)
            for i in range(2, 41):  # history 2: the writer waits for the watcher
                writer.publish(index_frame(i), timeout=TIMEOUT)
            writer.end_stream()
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["generation"] for line in lines] == list(range(1, 41))
    assert {line["dropped"] for line in lines} == {0}
