"""Child-process bodies for the limits tests (importable by spawned children).

Each body changes something only a throw-away process should (its descriptor
limit, its mapping count, its mount namespace) and reports over a pipe.
"""
from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from shmimage import NotFoundError, SharedImage, SharedMemory
from shmimage.memory import list_segments

SEGMENT = 4096
LIBC = ctypes.CDLL(None, use_errno=True)


def counts() -> tuple[int, int]:
    """(open descriptors, mappings) of this process."""
    with open("/proc/self/maps", "rb") as f:
        maps = sum(1 for _ in f)
    return len(os.listdir("/proc/self/fd")), maps


def max_map_count() -> int:
    with open("/proc/sys/vm/max_map_count") as f:
        return int(f.read())


def raise_nofile(want: int) -> int:
    """Raise the soft descriptor limit towards `want` (never above the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fill_mappings(leave: int) -> Any:
    """Use up the mapping count until only `leave` more mappings fit: one
    PROT_NONE reservation split into separate mappings by protecting every
    other page (no memory is touched). Returns the reservation to keep alive."""
    page = mmap.PAGESIZE
    n = (max_map_count() - counts()[1] - leave) // 2  # each protected page splits off two
    if n <= 0:
        return None
    LIBC.mmap.restype = ctypes.c_void_p
    LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    base = LIBC.mmap(None, 2 * n * page, 0,  # PROT_NONE
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0),
                     -1, 0)
    for i in range(n - 1):
        if LIBC.mprotect(base + (2 * i + 1) * page, page, mmap.PROT_READ) != 0:
            break
    return base


def create_until_refused(prefix: str, count: int) -> tuple[list[SharedMemory], Any]:
    """Create `count` segments or stop at the first refusal: (segments, error)."""
    made: list[SharedMemory] = []
    for i in range(count):
        memory = SharedMemory(f"{prefix}{i}")
        try:
            memory.create(SEGMENT)
        except Exception as exc:  # noqa: BLE001 - its type is the point
            return made, exc
        memory.data[0] = i % 251
        made.append(memory)
    return made, None


def many_segments(prefix: str, count: int, nofile: int | None, leave_maps: int | None,
                  conn: Any) -> None:
    """Create up to `count` segments in this process; report what bound first."""
    result: dict[str, Any] = {}
    try:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        else:
            raise_nofile(count + 256)
        reservation = fill_mappings(leave_maps) if leave_maps is not None else None
        started = time.monotonic()
        made, error = create_until_refused(prefix, count)
        result["created"] = len(made)
        result["seconds"] = time.monotonic() - started
        result["error"] = None if error is None else (type(error).__name__, str(error))
        result["error_types"] = [] if error is None else [c.__name__ for c in type(error).__mro__]
        result["intact"] = sum(m.data[0] == i % 251 for i, m in enumerate(made))
        freed = 0
        if error is not None and made:  # at the limit even counting needs room
            made.pop().detach()
            freed = 1
        fds, maps = counts()
        result["peak"] = (fds + freed, maps + freed)
        result["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        result["max_map_count"] = max_map_count()
        for memory in made:
            memory.detach()
        del reservation
        result["after"] = counts()
    except BaseException:  # noqa: BLE001 - reported to the test
        result["crash"] = traceback.format_exc()
    conn.send(result)
    conn.close()


def _holder(prefix: str, child: int, per: int, ready_w: int, go_r: int) -> None:
    made = []
    for i in range(per):
        memory = SharedMemory(f"{prefix}{child}-{i}")
        memory.create(SEGMENT)
        memory.data[0] = child
        made.append(memory)
    os.write(ready_w, b"!")
    os.read(go_r, 1)  # returns (empty) when the coordinator closes its end
    for memory in made:
        memory.detach()


def _die_with(parent: int) -> None:
    """In a forked child: be SIGKILLed when the coordinator dies, however it dies."""
    PR_SET_PDEATHSIG = 1
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _fork_holder(prefix: str, child: int, per: int, pipes: tuple[int, int, int, int]) -> int:
    ready_r, ready_w, go_r, go_w = pipes
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _die_with(parent)
            os.close(go_w)  # else no holder would ever see the coordinator's end close
            os.close(ready_r)
            _holder(prefix, child, per, ready_w, go_r)
        except BaseException:  # noqa: BLE001 - the exit code says it
            traceback.print_exc()
            code = 3
        os._exit(code)
    return pid


def _wait_ready(ready_r: int, n: int, timeout: float) -> int:
    got = 0
    deadline = time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        if select.select([ready_r], [], [], max(0.0, deadline - time.monotonic()))[0]:
            got += len(os.read(ready_r, n - got))
    return got


def _check_all(prefix: str, holders: int, per: int) -> int:
    """Attach to every holder's segments from here: how many carry their byte."""
    good = 0
    for child in range(holders):
        for i in range(per):
            memory = SharedMemory(f"{prefix}{child}-{i}")
            memory.attach()
            good += memory.data[0] == child
            memory.detach()
    return good


def many_processes(prefix: str, holders: int, per: int, conn: Any) -> None:
    """`holders` processes create `per` segments each; this one attaches to all
    of them; half the holders are then SIGKILLed, half detach and exit."""
    result: dict[str, Any] = {}
    pids: list[int] = []
    try:
        raise_nofile(holders * per + 256)
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        started = time.monotonic()
        pipes = (ready_r, ready_w, go_r, go_w)
        pids = [_fork_holder(prefix, c, per, pipes) for c in range(holders)]
        os.close(ready_w)
        os.close(go_r)
        result["ready"] = _wait_ready(ready_r, holders, 60.0)
        result["created_s"] = time.monotonic() - started
        result["listed"] = sum(s.key.startswith(prefix) for s in list_segments())
        result["intact"] = _check_all(prefix, holders, per)
        for pid in pids[::2]:
            os.kill(pid, signal.SIGKILL)
        os.close(go_w)
        result["exits"] = sorted({os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids})
        pids = []
        result["reattached"] = _touch_all(prefix, holders, per)
        result["seconds"] = time.monotonic() - started
    except BaseException:  # noqa: BLE001 - reported to the test
        result["crash"] = traceback.format_exc()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    conn.send(result)
    conn.close()


def _flock_churn(directory: str, inherited: tuple[int, ...]) -> int:
    """Fork a process that takes and drops flocks on its own files, nonstop,
    until it is killed or the coordinator dies."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _die_with(parent)
        for fd in inherited:  # the holders' go pipe must close with the coordinator
            os.close(fd)
        paths = [os.path.join(directory, f"churn{i}") for i in range(20)]
        fds = [os.open(path, os.O_CREAT | os.O_WRONLY, 0o600) for path in paths]
        while True:
            for fd in fds:
                fcntl.flock(fd, fcntl.LOCK_SH)
            for fd in fds:
                fcntl.flock(fd, fcntl.LOCK_UN)
    return pid


def listing_under_churn(prefix: str, holders: int, per: int, rounds: int, directory: str,
                        conn: Any) -> None:
    """`holders` processes hold `per` segments each while other flocks come and
    go on the machine; `ls` lists them `rounds` times: the attachment counts seen."""
    result: dict[str, Any] = {}
    pids: list[int] = []
    try:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pipes = (ready_r, ready_w, go_r, go_w)
        pids = [_fork_holder(prefix, c, per, pipes) for c in range(holders)]
        os.close(ready_w)
        os.close(go_r)
        result["ready"] = _wait_ready(ready_r, holders, 60.0)
        pids.append(_flock_churn(directory, (ready_r, go_w)))
        seen: set[int] = set()
        for _ in range(rounds):
            listed = [s for s in list_segments() if s.key.startswith(prefix)]
            seen |= {s.attachments for s in listed}
            result["listed"] = len(listed)
        result["attachments"] = sorted(seen)
        os.kill(pids.pop(), signal.SIGKILL)
        os.close(go_w)
        result["exits"] = sorted({os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids})
        pids = []
    except BaseException:  # noqa: BLE001 - reported to the test
        result["crash"] = traceback.format_exc()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    conn.send(result)
    conn.close()


def _touch_all(prefix: str, holders: int, per: int) -> int:
    """Every holder is gone: an attach must find nothing (and reclaims what
    the killed ones left). Returns how many still attached."""
    found = 0
    for child in range(holders):
        for i in range(per):
            memory = SharedMemory(f"{prefix}{child}-{i}")
            try:
                memory.attach()
            except NotFoundError:
                continue
            found += 1
            memory.detach()
    return found


# --- a planted FIFO, inside a private /dev/shm -------------------------------------

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18


def private_shm() -> str | None:
    """Give this process its own /dev/shm (a mount namespace and a tmpfs), so a
    hanging open() on a FIFO there can disturb nobody else. None when allowed."""
    if LIBC.unshare(CLONE_NEWNS) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}"
    if LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return f"mount --make-rprivate /: {os.strerror(ctypes.get_errno())}"
    if LIBC.mount(b"tmpfs", b"/dev/shm", b"tmpfs", 0, b"size=16m,mode=1777") != 0:
        return f"mount tmpfs: {os.strerror(ctypes.get_errno())}"
    return None


def _operation(name: str, key: str) -> Callable[[], object]:
    import numpy as np
    from shmimage.memory import collect_garbage

    operations: dict[str, Callable[[], object]] = {
        "attach": lambda: SharedMemory(key).attach(),
        "create": lambda: SharedMemory(key).create(SEGMENT),
        "publish": lambda: SharedImage(key).publish(np.zeros((4, 4), np.uint8)),
        "read": lambda: SharedImage(key).read(),
        "ls": list_segments,
        "gc": collect_garbage,
    }
    return operations[name]


def _run_operation(name: str, key: str, w: int) -> None:
    try:
        _operation(name, key)()
        outcome = "returned"
    except Exception as exc:  # noqa: BLE001 - its type is the point
        outcome = ",".join(c.__name__ for c in type(exc).__mro__) + ":" + str(exc)
    os.write(w, outcome.encode()[:4000])


def planted_fifo(name: str, key: str, patience: float, conn: Any) -> None:
    """In a private /dev/shm: plant a FIFO under the key's native name and run
    one operation in a forked child; report its outcome or that it blocked."""
    problem = private_shm()
    if problem is not None:
        conn.send({"skip": problem})
        return
    os.mkfifo(f"/dev/shm{SharedMemory(key).native_key}", 0o600)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _run_operation(name, key, w)
        os._exit(0)
    os.close(w)
    ready = select.select([r], [], [], patience)[0]
    outcome = os.read(r, 4000).decode() if ready else "blocked"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    conn.send({"outcome": outcome})


# --- timed waits, traced -------------------------------------------------------------


def timed_waits(held_key: str, image_key: str, missing_key: str, timeout: float) -> None:
    """Three timed waits that time out, each between two getcwd() calls that
    mark it in a system-call trace: lock(timeout) on a lock another process
    holds, wait(timeout) on a frame that does not come, wait(timeout) on a key
    that does not exist."""
    held = SharedMemory(held_key)
    held.attach()
    image = SharedImage(image_key)
    image.info()
    waits: list[Callable[[], object]] = [
        lambda: held.lock(timeout=timeout),
        lambda: image.wait(timeout=timeout),
        lambda: SharedImage(missing_key).wait(timeout=timeout),
    ]
    for wait in waits:
        os.getcwd()
        try:
            print(type(wait()).__name__, flush=True)
        except Exception as exc:  # noqa: BLE001 - what it raised is printed
            print(type(exc).__name__, flush=True)
    os.getcwd()
    held.detach()
    image.detach()
