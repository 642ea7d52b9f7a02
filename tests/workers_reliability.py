"""Child-process bodies for the reliability tests (importable by spawned children).

The crash tests use a spawned *supervisor* that forks its victims: a fork of an
already-imported interpreter costs milliseconds, so hundreds of real
SIGKILLs fit in a CI run. Most victims loop until they are killed.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import traceback
from typing import Any, Callable

import numpy as np
from shmimage import NoFrameError, SharedImage, SharedMemory, TornFrameError

WAIT = 30.0
# SHMIMAGE_SOAK scales every count and duration (a soak run sets e.g. 20).
SCALE = float(os.environ.get("SHMIMAGE_SOAK", "1") or "1")
# When set, tests append their numbers (cycles, kills, ...) to this JSON-lines file.
REPORT = os.environ.get("SHMIMAGE_RELIABILITY_REPORT", "")


def scaled(n: float) -> int:
    return max(1, int(n * SCALE))


def report(name: str, numbers: dict) -> None:
    if REPORT:
        with open(REPORT, "a") as f:
            f.write(json.dumps({"test": name, **numbers}) + "\n")


def uniform(frame: np.ndarray) -> bool:
    """Frames in these tests are filled with one byte value: a torn one is not."""
    flat = frame.reshape(-1).view(np.uint8)
    return bool(flat.size == 0 or np.all(flat == flat[0]))


def fork_victim(body: Callable[..., None], *args: Any) -> int:
    """Fork a child running `body(*args)`: it exits 0 when the body returns, 3
    (with the traceback on stderr) when it raises."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body(*args)
            code = 0
        except BaseException:  # noqa: BLE001 - the exit code says it
            traceback.print_exc()
            code = 3
        os._exit(code)
    return pid


def kill_and_reap(pid: int) -> int:
    """SIGKILL a forked child and reap it: its wait status."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    return status


def wait_for_byte(fd: int, timeout: float) -> bool:
    """Read one byte from a pipe within `timeout`."""
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 1) == b"!"


# --- 1: the lock holder is killed in the middle of publish ------------------------


def _publishing_victim(key: str, shape: tuple, loan: bool, ready_fd: int) -> None:
    image = SharedImage(key)
    frame = np.empty(shape, np.uint8)
    value = random.randrange(256)
    first = True
    while True:
        value = (value + 1) % 256
        if loan:
            with image.loan(shape) as buf:
                buf.fill(value)  # killed here: mid-fill, lock held
        else:
            frame.fill(value)
            image.publish(frame)  # killed here: mid-copy, lock held
        if first:
            os.write(ready_fd, b"!")
            first = False


def _recover(key: str, killed_at: float) -> tuple[float, bool]:
    """Take the lock after a kill: (seconds since the kill, owner_died)."""
    memory = SharedMemory(key)
    memory.attach()
    try:
        if not memory.lock(timeout=WAIT):
            raise AssertionError("the lock was not recovered: deadlock")
        took = time.monotonic() - killed_at
        died = memory.owner_died
        memory.unlock()
        return took, died
    finally:
        memory.detach()


def _check_latest(image: SharedImage) -> None:
    frame = image.read()
    if not uniform(frame):
        raise AssertionError("read() handed out a torn frame")
    with image.view() as view:
        if not uniform(view):
            raise AssertionError("view() handed out a torn frame")


def lock_kill_supervisor(key: str, cycles: int, shape: tuple, seed: int, conn: Any) -> None:
    """Fork publishers, SIGKILL them at random moments, check every recovery."""
    rng = random.Random(seed)
    stats = {"cycles": 0, "kills": 0, "owner_died": 0, "max_recovery_s": 0.0, "errors": []}
    image = SharedImage(key)
    try:
        image.publish(np.zeros(shape, np.uint8))
        for cycle in range(cycles):
            _one_lock_kill(image, key, shape, cycle % 2 == 1, rng, stats)
            stats["cycles"] += 1
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        stats["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        image.detach()
        conn.send(stats)
        conn.close()


def _one_lock_kill(image: SharedImage, key: str, shape: tuple, loan: bool,
                   rng: random.Random, stats: dict) -> None:
    read_fd, write_fd = os.pipe()
    pid = fork_victim(_publishing_victim, key, shape, loan, write_fd)
    os.close(write_fd)
    try:
        if not wait_for_byte(read_fd, WAIT):
            raise AssertionError("the publishing victim never published")
        time.sleep(rng.uniform(0, 0.02))
    finally:
        os.close(read_fd)
        killed_at = time.monotonic()
        status = kill_and_reap(pid)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        raise AssertionError(f"the victim ended on its own: status {status}")
    stats["kills"] += 1
    took, died = _recover(key, killed_at)
    stats["max_recovery_s"] = max(stats["max_recovery_s"], took)
    stats["owner_died"] += int(died)
    _check_latest(image)
    marker = np.full(shape, 0xA5, np.uint8)
    generation = image.publish(marker, timeout=WAIT)
    if image.info().generation != generation or not np.array_equal(image.read(), marker):
        raise AssertionError("the publish after a recovery was lost")


LAST_FRAME = 0x5A


def waiting_reader(key: str, conn: Any) -> None:
    """Wait for frames (no polling) through writers' deaths until the last one."""
    image = SharedImage(key)
    seen = image.info().generation
    woke = torn = 0
    try:
        while True:
            seen = image.wait(timeout=WAIT, after=seen)
            frame = image.read()
            woke += 1
            torn += not uniform(frame)
            if uniform(frame) and frame.flat[0] == LAST_FRAME:
                break
    finally:
        image.detach()
    conn.send({"woke": woke, "torn": torn})
    conn.close()


# --- 2: readers holding views are killed ------------------------------------------


def steady_writer(key: str, shape: tuple, ready: Any, stop: Any, conn: Any) -> None:
    """Publish uniform frames until told to stop; report count, errors, fds."""
    image = SharedImage(key)
    frame = np.empty(shape, np.uint8)
    fds_before = 0
    count, errors = 0, []
    try:
        while not stop.is_set():
            frame.fill(count % 256)
            image.publish(frame, timeout=WAIT)
            count += 1
            if count == 1:
                fds_before = len(os.listdir("/proc/self/fd"))  # attached by now
                ready.set()
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        fds_after = len(os.listdir("/proc/self/fd"))
        image.detach()
        conn.send({"published": count, "errors": errors, "fds": (fds_before, fds_after)})
        conn.close()


def _viewing_victim(key: str, hold: float, ready_fd: int) -> None:
    image = SharedImage(key)
    first = True
    while True:
        with image.view() as view:
            if not uniform(view):
                os._exit(5)
            if first:
                os.write(ready_fd, b"!")
                first = False
            time.sleep(hold)  # killed here: the slot stays pinned until the kernel drops it
        frame = image.read()
        if not uniform(frame):
            os._exit(6)


def reader_kill_supervisor(key: str, kills: int, seed: int, conn: Any) -> None:
    """Fork viewing readers two at a time and SIGKILL them mid-view."""
    rng = random.Random(seed)
    stats = {"kills": 0, "errors": []}
    try:
        for _ in range(kills):
            read_fd, write_fd = os.pipe()
            pid = fork_victim(_viewing_victim, key, rng.choice((0.0, 0.001, 0.05)), write_fd)
            os.close(write_fd)
            ok = wait_for_byte(read_fd, WAIT)
            os.close(read_fd)
            time.sleep(rng.uniform(0, 0.01))
            status = kill_and_reap(pid)
            if not ok or not os.WIFSIGNALED(status):
                raise AssertionError(f"a reader failed on its own: status {status}")
            stats["kills"] += 1
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        stats["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.send(stats)
        conn.close()


def read_frames(key: str, count: int, conn: Any) -> None:
    """Read `count` frames and check each; report how many were torn."""
    image = SharedImage(key)
    torn = 0
    try:
        for _ in range(count):
            torn += not uniform(image.read())
    finally:
        image.detach()
    conn.send(torn)
    conn.close()


# --- 3: the creator is killed while it sets the segment up ----------------------------


def _creating_victim(key: str, ready_fd: int) -> None:
    os.write(ready_fd, b"!")
    frame = np.full((64, 64, 4), 7, np.uint8)
    while True:
        image = SharedImage(key)
        image.publish(frame)  # creates: build, reserve, header, link, first frame
        image.detach()  # the last one out removes it: the next round creates again


def creator_kill_supervisor(key: str, kills: int, seed: int, conn: Any) -> None:
    """SIGKILL a process that keeps creating the segment; then open it."""
    rng = random.Random(seed)
    stats = {"kills": 0, "rebuilt": 0, "not_found": 0, "refused": 0, "errors": []}
    try:
        for _ in range(kills):
            read_fd, write_fd = os.pipe()
            pid = fork_victim(_creating_victim, key, write_fd)
            os.close(write_fd)
            ok = wait_for_byte(read_fd, WAIT)
            os.close(read_fd)
            time.sleep(rng.uniform(0, 0.01))
            kill_and_reap(pid)
            if not ok:
                raise AssertionError("the creating victim never started")
            stats["kills"] += 1
            open_after_creator_died(key, stats)
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        stats["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.send(stats)
        conn.close()


def open_after_creator_died(key: str, stats: dict) -> None:
    """A later opener: attach finds nothing or a good frame; publish always works."""
    from shmimage import IncompatibleSegmentError, NotFoundError

    image = SharedImage(key)
    try:
        try:
            frame = image.read()
            if frame.shape != (64, 64, 4) or not uniform(frame):
                raise AssertionError("attached to a half-built segment")
        except NotFoundError:
            stats["not_found"] += 1
        except (NoFrameError, TornFrameError):
            pass
        except IncompatibleSegmentError:
            stats["refused"] += 1
            return
        image.publish(np.full((64, 64, 4), 9, np.uint8), timeout=WAIT)
        if not np.all(image.read() == 9):
            raise AssertionError("the rebuilt segment lost its frame")
        stats["rebuilt"] += 1
    finally:
        image.detach()


GO_MARKER = "/nonexistent/shmimage-creation-starts-here"


def stepped_creator(key: str, grow: bool) -> None:
    """Create, publish (and grow) and detach once stdin has a line (traced by strace).

    It waits in select(), a system call that no step of the set-up makes, so
    strace's per-call counts (its when=) do not depend on whether strace
    attached before or during the wait.
    """
    import select

    frame = np.full((64, 64, 4), 7, np.uint8)
    bigger = np.full((256, 256, 4), 7, np.uint8)
    image = SharedImage(key)
    print("ready", flush=True)
    select.select([0], [], [])
    os.path.exists(GO_MARKER)  # a system call that marks the start in the trace
    image.publish(frame)
    if grow:
        image.publish(bigger)  # a new, larger segment swapped in under the name
    image.detach()
    print("done", flush=True)


def stepped_grower(key: str) -> None:
    """Attach to the store under `key`; once stdin has a line, publish a
    small frame, a large one (the store grows, under whatever lossless
    subscriber is registered) and a small one, and detach (traced by strace)."""
    import select

    image = SharedImage(key)
    image.info()  # attached before the trace starts
    print("ready", flush=True)
    select.select([0], [], [])
    os.path.exists(GO_MARKER)
    for side in (8, 256, 8):
        image.publish(np.full((side, side), 7, np.uint8))
    image.detach()
    print("done", flush=True)


# --- 7: another user ------------------------------------------------------------------


def drop_to(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def try_as_user(key: str, uid: int, conn: Any) -> None:
    """As `uid`, try every way into the segment under `key`; report what happened."""
    from shmimage import AccessMode

    drop_to(uid)
    tries = {
        "attach": lambda: SharedMemory(key).attach(),
        "attach_read_only": lambda: SharedMemory(key).attach(AccessMode.READ_ONLY),
        "read": lambda: SharedImage(key).read(),
        "info": lambda: SharedImage(key).info(),
        "publish": lambda: SharedImage(key).publish(np.zeros((4, 4), np.uint8), timeout=1),
        "create": lambda: SharedMemory(key).create(64),
        "remove": lambda: SharedMemory.remove(key),
    }
    results = {}
    for name, call in tries.items():
        try:
            call()
            results[name] = "succeeded"
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[name] = type(exc).__name__
    conn.send(results)
    conn.close()


def squat_as_user(key: str, uid: int, ready: Any, stop: Any) -> None:
    """As `uid`, create the segment first and open it to everybody (0666)."""
    drop_to(uid)
    image = SharedImage(key)
    image.publish(np.full((4, 4), 66, np.uint8))
    os.chmod("/dev/shm" + image.native_key, 0o666)
    ready.set()
    stop.wait(WAIT)
    image.detach()


# --- 4: a full /dev/shm (run inside a private, small tmpfs) ---------------------------


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
        return "ok"
    except BaseException as exc:  # noqa: BLE001 - the outcome is the finding
        return type(exc).__name__


def _free_bytes() -> int:
    st = os.statvfs("/dev/shm")
    return st.f_bavail * st.f_frsize


def _forked_reads(key: str, rounds: int) -> int:
    """Read and view in a forked child; its wait status (a SIGBUS shows here)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            image = SharedImage(key)
            for _ in range(rounds):
                code |= 0 if uniform(image.read()) else 4
                with image.view() as view:
                    code |= 0 if uniform(view) else 8
            image.detach()
        except BaseException:  # noqa: BLE001 - the exit code says it
            code |= 16
        os._exit(code)
    return os.waitpid(pid, 0)[1]


def full_shm_scenario() -> dict:
    """What shmimage does as /dev/shm runs out; call only inside a small tmpfs."""
    out: dict = {"entries_before": sorted(os.listdir("/dev/shm"))}
    room = _free_bytes()
    out["create_too_big"] = _outcome(lambda: SharedMemory("too-big").create(room + (16 << 20)))
    out["entries_after_failed_create"] = sorted(os.listdir("/dev/shm"))
    image = SharedImage("frames")
    small = np.full((512, 1024, 4), 1, np.uint8)  # 2 MiB
    out["publish_small"] = [_outcome(lambda: image.publish(small)) for _ in range(4)]
    out["publish_too_big"] = _outcome(lambda: _publish_more_than(image, room))
    out["read_after_too_big"] = _outcome(lambda: _require(uniform(image.read())))
    out["publish_small_after_too_big"] = _outcome(lambda: image.publish(small))
    path = "/dev/shm/ballast"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(4096, _free_bytes() - (256 << 10)))
        out["free_with_ballast"] = _free_bytes()
        out["publish_small_when_full"] = [_outcome(lambda: image.publish(small)) for _ in range(4)]
        medium = np.full((1024, 1024, 4), 2, np.uint8)  # needs new slots: no room
        out["publish_medium_when_full"] = _outcome(lambda: image.publish(medium, timeout=WAIT))
        out["create_when_full"] = _outcome(lambda: SharedMemory("when-full").create(1 << 20))
        out["reader_when_full"] = _forked_reads("frames", scaled(20))
    finally:
        os.close(fd)
        os.unlink(path)
    out["publish_medium_after"] = _outcome(lambda: image.publish(np.full((1024, 1024, 4), 3,
                                                                         np.uint8)))
    out["reader_after"] = _forked_reads("frames", 3)
    image.detach()
    out["entries_after"] = sorted(os.listdir("/dev/shm"))
    return out


def _publish_more_than(image: SharedImage, room: int) -> None:
    image.publish(np.zeros((room // 4096 + 2048, 1024, 4), np.uint8), timeout=WAIT)


def _require(ok: bool) -> None:
    if not ok:
        raise AssertionError("a torn or wrong frame")


# --- 5: lifecycle stress ---------------------------------------------------------------

STRESS_SHAPES = [(16, 16), (64, 64, 4), (256, 256, 4), (480, 640, 4)]


def _fill_and_publish(image: SharedImage, rng: random.Random) -> None:
    image.publish(np.full(rng.choice(STRESS_SHAPES), rng.randrange(256), np.uint8), timeout=WAIT)


def _loan_and_fill(image: SharedImage, rng: random.Random) -> None:
    with image.loan(rng.choice(STRESS_SHAPES), timeout=WAIT) as buf:
        buf.fill(rng.randrange(256))


def _view_and_check(image: SharedImage, rng: random.Random) -> None:
    with image.view() as view:
        _require(uniform(view))
        time.sleep(rng.choice((0, 0, 0.002)))


def _lock_raw(key: str) -> None:
    memory = SharedMemory(key)
    memory.attach()
    try:
        if not memory.lock(timeout=WAIT):
            raise AssertionError("the lock was not free within the watchdog")
        memory.unlock()
    finally:
        memory.detach()


def _stress_step(images: dict, key: str, rng: random.Random) -> None:
    image = images.setdefault(key, SharedImage(key))
    roll = rng.random()
    if roll < 0.3:
        _fill_and_publish(image, rng)
    elif roll < 0.5:
        _require(uniform(image.read()))
    elif roll < 0.65:
        _view_and_check(image, rng)
    elif roll < 0.72:
        image.wait(timeout=0.01)
    elif roll < 0.8:
        images.pop(key).detach()
    elif roll < 0.9:
        _loan_and_fill(image, rng)
    else:
        _lock_raw(key)


def _stress_victim(keys: list, seed: int, deadline: float, progress_fd: int) -> None:
    """Random life until the deadline (if nobody kills it first); a byte on
    `progress_fd` for every ten steps done."""
    from shmimage import NotFoundError

    allowed = (NotFoundError, NoFrameError, TornFrameError, TimeoutError)
    rng = random.Random(seed)
    images: dict = {}
    steps = 0
    while time.monotonic() < deadline:
        try:
            _stress_step(images, rng.choice(keys), rng)
        except allowed:
            pass
        steps += 1
        if steps % 10 == 0:
            with contextlib.suppress(BlockingIOError):
                os.write(progress_fd, b".")
    for image in images.values():
        image.detach()


def _headers_sound(keys: list) -> bool:
    """Every segment under the keys has a complete shmimage header."""
    from shmimage import NotFoundError, _shmcore

    for key in keys:
        try:
            if not _shmcore.probe(SharedImage(key).native_key, False)["ours"]:
                return False
        except NotFoundError:
            continue
    return True


def _reap_finished(live: dict, stats: dict) -> None:
    for pid in list(live):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            del live[pid]
            if status != 0:
                stats["errors"].append(f"a worker failed on its own: status {status}")


def _start_worker(live: dict, keys: list, rng: random.Random, deadline: float,
                  progress_fd: int) -> None:
    pid = fork_victim(_stress_victim, keys, rng.randrange(1 << 30), deadline, progress_fd)
    live[pid] = True


def _count_progress(fd: int, stats: dict) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            got = os.read(fd, 65536)
            if not got:
                return
            stats["steps"] += 10 * len(got)


def _stress_rounds(keys: list, workers: int, seconds: float, rng: random.Random,
                   stats: dict) -> dict:
    deadline = time.monotonic() + seconds
    live: dict = {}
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    for _ in range(workers):
        _start_worker(live, keys, rng, deadline + 1.0, write_fd)
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.01, 0.15))
        _count_progress(read_fd, stats)
        _reap_finished(live, stats)
        if live:
            pid = rng.choice(list(live))
            del live[pid]
            status = kill_and_reap(pid)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                stats["kills"] += 1
            elif status != 0:
                stats["errors"].append(f"a worker failed before its kill: status {status}")
        _start_worker(live, keys, rng, deadline + 1.0, write_fd)
        stats["started"] += 1
        if not _headers_sound(keys):
            stats["errors"].append("a segment with an incomplete header was visible")
    os.close(write_fd)
    _count_progress(read_fd, stats)
    os.close(read_fd)
    return live


def _drain(live: dict, stats: dict) -> None:
    """Let the survivors finish on their own; one that does not has hung."""
    limit = time.monotonic() + WAIT
    while live and time.monotonic() < limit:
        _reap_finished(live, stats)
        time.sleep(0.05)
    for pid in list(live):
        kill_and_reap(pid)
        stats["errors"].append("a worker hung (killed by the watchdog)")


def _temporary_names() -> set:
    return {n for n in os.listdir("/dev/shm") if n.startswith(".shmimage-")}


def _owner_gone(name: str) -> bool:
    """Is the process that named `.shmimage-<pid>-...` gone?"""
    try:
        os.kill(int(name.split("-")[1]), 0)
        return False
    except (ProcessLookupError, ValueError, IndexError):
        return True


def _sweep_grow_leftovers(before: set, stats: dict) -> None:
    """Count and remove what killed growers left and no sweep removed (a key's
    last holder sweeps, but here the last holder may be killed too): the
    figure is reported, and the run's /dev/shm check stays about segments."""
    for name in sorted(_temporary_names() - before):
        if name.endswith("-grow") and _owner_gone(name):
            stats["grow_temp_leaks"] += 1
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/dev/shm/" + name)


def stress_supervisor(keys: list, workers: int, seconds: float, seed: int, conn: Any) -> None:
    """Workers create, attach, publish, read, detach and get killed at random."""
    rng = random.Random(seed)
    stats: dict = {"kills": 0, "started": workers, "steps": 0, "grow_temp_leaks": 0,
                   "errors": []}
    before = _temporary_names()
    try:
        live = _stress_rounds(keys, workers, seconds, rng, stats)
        _drain(live, stats)
        _sweep_grow_leftovers(before, stats)
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        stats["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        conn.send(stats)
        conn.close()
