"""Child-process bodies for tests/test_memory_portable.py: `ls` and `gc` with
the core built for macOS's portable paths (SHMP_FORCE_PORTABLE), where
segments are files in the core's own directory instead of /dev/shm."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from shmimage import SharedMemory, _shmcore
from shmimage.memory import collect_garbage, list_segments


def _create_and_wait(key: str, ready_fd: int) -> None:
    shm = SharedMemory(key)
    shm.create(4096)
    os.write(ready_fd, b"r")
    time.sleep(60)


def listing_and_garbage(live_key: str, stale_key: str) -> dict:
    """A live segment is listed; one whose creator was SIGKILLed is collected."""
    out: dict = {"dir": _shmcore.segment_dir()}
    live = SharedMemory(live_key)
    live.create(1234)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _create_and_wait(stale_key, write_fd)
        finally:
            os._exit(0)
    os.read(read_fd, 1)
    stale_native = SharedMemory(stale_key).native_key
    stale_file = out["dir"] + stale_native
    out["stale_file_while_alive"] = os.path.exists(stale_file)
    out["listed_while_alive"] = sorted(
        e.native_key for e in list_segments() if e.native_key in (live.native_key, stale_native))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    out["stale_file_after_kill"] = os.path.exists(stale_file)
    out["collected"] = [n for n in collect_garbage() if n == stale_native]
    out["stale_file_after_gc"] = os.path.exists(stale_file)
    entries = [e for e in list_segments() if e.native_key == live.native_key]
    out["live"] = [{"key": e.key, "size": e.size, "persistent": e.persistent} for e in entries]
    out["live_file"] = os.path.exists(out["dir"] + live.native_key)
    live.detach()
    out["live_file_after_detach"] = os.path.exists(out["dir"] + live.native_key)
    out["natives"] = [live.native_key, stale_native]
    return out


if __name__ == "__main__":
    print(json.dumps(listing_and_garbage(sys.argv[1], sys.argv[2])), flush=True)
