"""Child-process bodies for the memory admission tests.

Each scenario runs in its own interpreter (started by tests/test_admission.py,
inside a private mount namespace or a child cgroup), asks for more memory
than one limit allows, and prints one JSON line of what happened: a child
that the OOM killer took prints nothing and dies by SIGKILL.
"""
from __future__ import annotations

import json
import os
import select
import time
from typing import Any, Callable

import numpy as np
from shmimage import SharedImage, SharedMemory

MIB = 1 << 20
GIB = 1 << 30


def _free(path: str = "/dev/shm") -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _attempt(call: Callable[[], Any]) -> dict:
    """The outcome of `call`: its exception's type and message, or "ok"."""
    try:
        call()
        return {"outcome": "ok", "message": ""}
    except BaseException as exc:  # noqa: BLE001 - the outcome is the finding
        return {"outcome": type(exc).__name__, "message": str(exc)}


def _create_and_drop(key: str, size: int) -> None:
    shm = SharedMemory(key)
    shm.create(size)
    shm.detach()


def _meminfo_bytes(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def beyond_free_space() -> dict:
    """In a small tmpfs: more than its free space, then what fits."""
    out: dict = {"free": _free(), "entries_before": sorted(os.listdir("/dev/shm"))}
    out["too_big"] = _attempt(lambda: _create_and_drop("adm-space", out["free"] + 16 * MIB))
    out["entries_after"] = sorted(os.listdir("/dev/shm"))
    out["free_after"] = _free()
    out["fits"] = _attempt(lambda: _create_and_drop("adm-space", 16 * MIB))
    return out


def beyond_memory() -> dict:
    """In a tmpfs larger than RAM: more than RAM + swap."""
    ram, swap = _meminfo_bytes("MemTotal"), _meminfo_bytes("SwapTotal")
    out: dict = {"ram": ram, "swap": swap, "free": _free()}
    out["too_big"] = _attempt(lambda: _create_and_drop("adm-ram", ram + swap + GIB))
    out["entries_after"] = sorted(os.listdir("/dev/shm"))
    out["fits"] = _attempt(lambda: _create_and_drop("adm-ram", 16 * MIB))
    return out


def beyond_cgroup(limit: int) -> dict:
    """In a child cgroup of `limit` bytes: a segment and a frame larger than it."""
    out: dict = {}
    out["too_big"] = _attempt(lambda: _create_and_drop("adm-cgroup", 2 * limit))
    image = SharedImage("adm-cgroup-frames")
    out["frame_fits"] = _attempt(lambda: image.publish(np.ones((256, 256, 4), np.uint8)))
    # The frame itself fits in the process; a slot for it as well does not.
    big = np.ones((limit * 6 // 10 // (4096 * 4), 4096, 4), np.uint8)
    out["frame_too_big"] = _attempt(lambda: image.publish(big))
    out["frame_after"] = _attempt(lambda: image.read())
    image.detach()
    out["fits"] = _attempt(lambda: _create_and_drop("adm-cgroup", 16 * MIB))
    out["entries_after"] = sorted(n for n in os.listdir("/dev/shm") if "adm" in n)
    return out


def _take_room_once_reserving(ready: int, report: int, start_free: int) -> None:
    """Ballast: wait until the other process has begun reserving (free space
    dropped by 16 MiB), then take every free byte, 4 MiB at a time."""
    os.write(ready, b"r")
    deadline = time.monotonic() + 60
    while _free() > start_free - 16 * MIB and time.monotonic() < deadline:
        pass
    seen = start_free - _free()
    fd = os.open("/dev/shm/ballast", os.O_CREAT | os.O_RDWR, 0o600)
    taken = 0
    while True:
        try:
            os.posix_fallocate(fd, taken, 4 * MIB)
        except OSError:
            break
        taken += 4 * MIB
    os.write(report, json.dumps({"seen_reserved": seen, "taken": taken}).encode())


def limit_reached_midway() -> dict:
    """Another process takes the tmpfs's room while a segment is reserved."""
    start = _free()
    size = start * 3 // 4
    ready_r, ready_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _take_room_once_reserving(ready_w, report_w, start)
        finally:
            os._exit(0)
    select.select([ready_r], [], [], 30)
    os.read(ready_r, 1)
    out: dict = {"free": start, "size": size}
    out["create"] = _attempt(lambda: _create_and_drop("adm-midway", size))
    out["ballast_status"] = os.waitpid(pid, 0)[1]
    out["ballast"] = json.loads(os.read(report_r, 4096) or b"{}")
    out["free_after"] = _free()
    out["entries_after"] = sorted(os.listdir("/dev/shm"))
    os.unlink("/dev/shm/ballast")
    return out


SCENARIOS: dict[str, Callable[..., dict]] = {
    "beyond_free_space": beyond_free_space,
    "beyond_memory": beyond_memory,
    "beyond_cgroup": beyond_cgroup,
    "limit_reached_midway": limit_reached_midway,
}


def main(name: str, *args: str) -> None:
    """Run one scenario; its result is the last line printed."""
    print(json.dumps(SCENARIOS[name](*(int(a) for a in args))), flush=True)
