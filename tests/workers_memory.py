"""Module-level helpers and child-process workers for the SharedMemory tests.

Workers run in spawned (or forked) children. They report failure through a
non-zero exit code (the traceback goes to stderr) or through a Pipe.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import struct
import time
from typing import Any

from shmimage import AccessMode, AlreadyExistsError, NotFoundError, SharedMemory

SHM_DIR = "/dev/shm"
WAIT = 30.0  # upper bound for any wait: a hung test fails instead of hanging
HOLD = 120.0  # how long a "holder" child lives if nobody kills it

# Producer/consumer layout: round, acks, then the payload.
ROUND_AT, ACKS_AT, PAYLOAD_AT = 0, 4, 16


def shm_path(native_key: str) -> str:
    """Where a POSIX native name lives on Linux."""
    return os.path.join(SHM_DIR, native_key.lstrip("/"))


def pattern(seed: int, size: int) -> bytes:
    """Deterministic bytes that differ for every seed."""
    block = bytes((seed * 31 + i * 7 + (i >> 8)) % 256 for i in range(256))
    return (block * (size // 256 + 1))[:size]


def write_pattern(shm: SharedMemory, seed: int) -> None:
    with shm.data as mv:
        mv[:] = pattern(seed, len(mv))


def has_pattern(shm: SharedMemory, seed: int) -> bool:
    with shm.data as mv:
        return bytes(mv) == pattern(seed, len(mv))


# --- producer / consumer over the segment's own lock --------------------------


def _get(mv: memoryview, offset: int) -> int:
    return struct.unpack_from("<I", mv, offset)[0]


def _put(mv: memoryview, offset: int, value: int) -> None:
    struct.pack_into("<I", mv, offset, value)


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"gave up waiting for {what}")


def produce(shm: SharedMemory, consumers: int, rounds: int) -> None:
    """Write `rounds` payloads, each only after every consumer acked the last."""
    deadline = time.monotonic() + WAIT
    for r in range(1, rounds + 2):
        while True:
            with shm.locked(timeout=WAIT), shm.data as mv:
                if _get(mv, ACKS_AT) == consumers * (r - 1):
                    if r <= rounds:
                        mv[PAYLOAD_AT:] = pattern(r, len(mv) - PAYLOAD_AT)
                        _put(mv, ROUND_AT, r)
                    break
            _check_deadline(deadline, f"acks of round {r - 1}")
            time.sleep(0.001)


def consume(shm: SharedMemory, rounds: int) -> None:
    """Read every round under the lock, check it and ack it."""
    deadline = time.monotonic() + WAIT
    seen = 0
    while seen < rounds:
        with shm.locked(timeout=WAIT), shm.data as mv:
            current = _get(mv, ROUND_AT)
            if current > seen:
                if current != seen + 1:
                    raise AssertionError(f"skipped from round {seen} to {current}")
                if bytes(mv[PAYLOAD_AT:]) != pattern(current, len(mv) - PAYLOAD_AT):
                    raise AssertionError(f"round {current} payload is corrupt")
                _put(mv, ACKS_AT, _get(mv, ACKS_AT) + 1)
                seen = current
                continue
        _check_deadline(deadline, f"round {seen + 1}")
        time.sleep(0.001)


def consumer_worker(key: str, rounds: int, ready: Any) -> None:
    shm = SharedMemory(key)
    shm.attach()
    ready.set()
    consume(shm, rounds)
    assert shm.detach()


# --- small spawn workers -------------------------------------------------------


def send_native_key(key: str, conn: Any) -> None:
    conn.send(SharedMemory(key).native_key)
    conn.close()


def attach_read_write(key: str, seed: int, new_seed: int, conn: Any) -> None:
    """Check the parent's pattern, write our own, report, detach."""
    shm = SharedMemory(key)
    shm.attach()
    conn.send((shm.size, has_pattern(shm, seed)))
    write_pattern(shm, new_seed)
    conn.send(shm.detach())
    conn.close()


def attach_and_exit(key: str, seed: int, explicit_detach: bool, conn: Any) -> None:
    """Attach, read, and leave (detaching explicitly or by exiting)."""
    shm = SharedMemory(key)
    shm.attach()
    conn.send(has_pattern(shm, seed))
    conn.close()
    if explicit_detach:
        shm.detach()


def attach_read_only(key: str, seed: int, conn: Any) -> None:
    shm = SharedMemory(key)
    shm.attach(AccessMode.READ_ONLY)
    conn.send((shm.data.readonly, has_pattern(shm, seed)))
    conn.close()
    shm.detach()


def hold_lock(key: str, seed: int, ready: Any, stop: Any) -> None:
    """Attach, take the lock, scribble, tell the parent, and wait to be killed."""
    shm = SharedMemory(key)
    shm.attach()
    assert shm.lock(timeout=WAIT)
    write_pattern(shm, seed)
    ready.set()
    stop.wait(HOLD)


def create_and_hold(key: str, size: int, seed: int, persistent: bool, ready: Any,
                    stop: Any) -> None:
    """Create, fill, tell the parent; stay attached until told to stop (or killed)."""
    shm = SharedMemory(key)
    shm.create(size, persistent=persistent)
    write_pattern(shm, seed)
    ready.set()
    stop.wait(HOLD)
    shm.detach()


def attach_and_hold(key: str, ready: Any, stop: Any) -> None:
    shm = SharedMemory(key)
    shm.attach()
    ready.set()
    stop.wait(HOLD)
    shm.detach()


def create_persistent_and_exit(key: str, size: int, seed: int) -> None:
    shm = SharedMemory(key)
    shm.create(size, persistent=True)
    write_pattern(shm, seed)
    shm.detach()


# --- fork workers (the SharedMemory object is inherited, not pickled) ----------


def forked_child(box: list[SharedMemory], action: str, seed: int) -> None:
    """What a forked child does with the segment it inherited (``box`` holds it)."""
    shm = box[0]
    if not has_pattern(shm, seed):
        raise AssertionError("the inherited mapping does not show the parent's data")
    if action == "write":
        write_pattern(shm, seed + 1)
    elif action == "detach":
        if not shm.detach():
            raise AssertionError("detach() in the child returned False")
    elif action == "dealloc":
        # Drop every reference the child has, so the object is deallocated here.
        box.clear()
        del shm
        gc.collect()
    elif action == "exit":
        os._exit(0)
    elif action == "lock":  # the parent does not hold it: take it and give it back
        if not shm.lock(timeout=WAIT):
            raise AssertionError("lock() in the forked child timed out")
        shm.unlock()
    elif action == "lock-held" and shm.lock(timeout=0.2) is not False:
        raise AssertionError("the child got a lock its parent holds")


def attach_as_user(key: str, uid: int, conn: Any) -> None:
    """Drop root, then try to attach; report the exception type name (or None)."""
    os.setgid(uid)
    os.setuid(uid)
    try:
        shm = SharedMemory(key)
        shm.attach()
        shm.detach()
    except Exception as exc:  # noqa: BLE001 - the parent checks what it was
        conn.send((type(exc).__name__, isinstance(exc, PermissionError)))
    else:
        conn.send((None, False))
    conn.close()


def increment_worker(key: str, rounds: int, start: Any) -> None:
    """Read-modify-write a shared counter under the lock, `rounds` times."""
    shm = SharedMemory(key)
    shm.attach()
    assert start.wait(WAIT)
    for _ in range(rounds):
        with shm.locked(timeout=WAIT), shm.data as mv:
            value = struct.unpack_from("<Q", mv, 0)[0]
            struct.pack_into("<Q", mv, 0, value + 1)
    shm.detach()


# --- races ---------------------------------------------------------------------------


def race_create(key: str, start: Any, stop: Any, conn: Any) -> None:
    """Try to create at the same moment as others; the winner stays until told."""
    shm = SharedMemory(key)
    assert start.wait(WAIT)
    try:
        shm.create(4096)
    except AlreadyExistsError:
        conn.send("exists")
        return
    conn.send("created")
    stop.wait(WAIT)
    shm.detach()


def churn(key: str, rounds: int, start: Any, conn: Any) -> None:
    """Create-or-attach, use, detach, over and over, against other churners."""
    counts = {"created": 0, "attached": 0, "missed": 0}
    assert start.wait(WAIT)
    for i in range(rounds):
        shm = SharedMemory(key)
        try:
            shm.create(256)
            counts["created"] += 1
        except AlreadyExistsError:
            try:
                shm.attach()
            except NotFoundError:
                counts["missed"] += 1  # it went away between the two calls
                continue
            counts["attached"] += 1
        if shm.size != 256:
            raise AssertionError(f"size {shm.size}")
        if not os.path.exists(shm_path(shm.native_key)):
            raise AssertionError("the name vanished while attached")
        with shm.locked(timeout=WAIT), shm.data as mv:
            mv[i % 256] = i % 251
        assert shm.detach()
    conn.send(counts)
    conn.close()


def forked_hold(box: list[SharedMemory], ready: Any, stop: Any) -> None:
    """A forked child that keeps its inherited segment until told to go."""
    if not box[0].is_attached:
        raise AssertionError("the inherited object is not attached")
    ready.set()
    stop.wait(WAIT)


def shared_machine() -> bool:
    """True off CI: other people's runs may touch (and reclaim) names meanwhile."""
    flag = os.environ.get("SHMIMAGE_STRICT_SHM", os.environ.get("CI", ""))
    return flag.lower() in ("", "0", "false", "no")


def lock_and_return(key: str) -> None:
    """Take the lock and simply return: the interpreter exits holding it."""
    shm = SharedMemory(key)
    shm.attach()
    assert shm.lock(timeout=WAIT)
    shm.data[0] = 1


def check_last_byte(key: str, conn: Any) -> None:
    shm = SharedMemory(key)
    shm.attach()
    with shm.data as mv:
        conn.send((shm.size, mv[-1], mv[0]))
        mv[-1] = 0x5A
    conn.close()
    shm.detach()


def lock_until_interrupted(key: str, ready: Any, conn: Any) -> None:
    """Block in lock() (the parent holds it) and report how that ended."""
    # A job started in the background inherits SIGINT ignored; Ctrl+C is what
    # is tested here, so have Python's handler whatever the parent had.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    shm = SharedMemory(key)
    shm.attach()
    ready.set()
    try:
        shm.lock()
    except KeyboardInterrupt:
        conn.send("interrupted")
    else:
        conn.send("locked")
    conn.close()


def detach_while_another_thread_waits(key: str, conn: Any) -> None:
    """Detach an object while another thread is blocked in its lock()."""
    import threading

    owner = SharedMemory(key)
    owner.create(64)
    assert owner.lock()
    shm = SharedMemory(key)
    shm.attach()
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["waiter"] = shm.lock(timeout=WAIT)
        except Exception as exc:  # noqa: BLE001 - a typed error is a fine outcome
            outcome["waiter"] = type(exc).__name__

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.3)  # let it block; the outcome must be sane either way
    try:
        outcome["detach"] = shm.detach()
    except Exception as exc:  # noqa: BLE001 - refusing with a typed error is fine
        outcome["detach"] = type(exc).__name__
    owner.unlock()
    waiter.join(WAIT)
    outcome["waiter_alive"] = waiter.is_alive()
    # If the waiter got the lock, its thread has ended holding it: detach
    # recovers it (unlock() from this thread would rightly be refused).
    shm.detach()
    owner.detach()
    conn.send(outcome)
    conn.close()


# --- parent-side helpers ---------------------------------------------------------------

spawn = multiprocessing.get_context("spawn")


def finish(proc: Any) -> None:
    proc.join(WAIT)
    assert not proc.is_alive(), "child did not exit"
    assert proc.exitcode == 0, f"child failed with exit code {proc.exitcode}"


def kill(proc: Any) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(WAIT)
    assert proc.exitcode == -signal.SIGKILL


def start_ready(procs: Any, target: Any, *args: Any) -> tuple[Any, Any]:
    """Start a spawned holder; return it and its stop event once it is ready."""
    ready, stop = spawn.Event(), spawn.Event()
    proc = procs.start(target, *args, ready, stop)
    assert ready.wait(WAIT), "child never got ready"
    return proc, stop


def killed_creator(procs: Any, key: str, size: int = 4096, seed: int = 1) -> str:
    """A child creates the segment and is SIGKILLed; returns the native key."""
    proc, _ = start_ready(procs, create_and_hold, key, size, seed, False)
    kill(proc)
    return SharedMemory(key).native_key


def lock_through_signals(key: str, ready: Any, conn: Any) -> None:
    """Block in lock() while SIGUSR1 handlers run; report (got it, handler calls)."""
    calls = []
    signal.signal(signal.SIGUSR1, lambda *_: calls.append(1))
    shm = SharedMemory(key)
    shm.attach()
    ready.set()
    got = shm.lock(timeout=WAIT)
    conn.send((got, len(calls)))
    conn.close()
    if got:
        shm.unlock()
    shm.detach()


def exhaust_descriptors(prefix: str, conn: Any) -> None:
    """Create segments under a low descriptor limit until it bites; report how."""
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    made: list[SharedMemory] = []
    outcome = "never failed"
    for i in range(200):
        shm = SharedMemory(f"{prefix}-{i}")
        try:
            shm.create(64)
        except Exception as exc:  # noqa: BLE001 - the parent checks what it was
            outcome = type(exc).__name__
            break
        made.append(shm)
    count = len(made)
    for shm in made:
        shm.detach()
    conn.send((outcome, count))
    conn.close()
