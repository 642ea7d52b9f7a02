"""The creator is killed at each system call of its set-up (and of its detach).

strace attaches to a creator that has finished importing, and kills it with
SIGKILL on entry to the n-th call of one system call: every step of build,
reserve, header, link, first frame and last detach gets its own death. A
later opener must find nothing, or a complete segment; never hang; and a
publish must always work afterwards. Nothing may be left in /dev/shm.

A writer that grows the store under a lossless subscriber is killed the same
way, at each call of its run that can change what others see: another writer
goes on, the subscriber misses nothing, and the last detach leaves nothing.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from typing import Callable

import numpy as np
import pytest
from shmimage import IncompatibleSegmentError, NotFoundError, SharedImage
from shmimage.memory import collect_garbage
from workers_reliability import GO_MARKER, WAIT, report, uniform

STRACE = shutil.which("strace")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
    pytest.mark.skipif(STRACE is None, reason="needs strace to kill at each system call"),
]
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CALL = re.compile(r"^([a-z_0-9]+)\(")


def start_stepped(call: str) -> subprocess.Popen:
    """A child running workers_reliability.<call>, ready for strace and "go"."""
    env = {**os.environ, "PYTHONPATH": TESTS_DIR}
    code = f"import workers_reliability as w; w.{call}"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def attach_strace(pid: int, args: list) -> subprocess.Popen:
    """strace attached to `pid` (returns once the attachment is confirmed)."""
    tracer = subprocess.Popen([STRACE, "-p", str(pid), *args], stderr=subprocess.PIPE, text=True)
    assert tracer.stderr is not None
    line = tracer.stderr.readline()
    if "attached" not in line:
        tracer.kill()
        tracer.wait(WAIT)
        pytest.skip(f"strace cannot attach here: {line.strip()}")
    return tracer


def run_creator(key: str, grow: bool, strace_args: list, pids: list | None = None) -> int:
    """Run one creator under strace: its return code (-9 when it was killed)."""
    return run_stepped(f"stepped_creator({key!r}, {grow!r})", strace_args, pids)


def run_stepped(call: str, strace_args: list, pids: list | None = None) -> int:
    """Run one stepped child under strace: its return code (-9 when it was killed)."""
    proc = start_stepped(call)
    if pids is not None:
        pids.append(proc.pid)
    tracer: subprocess.Popen | None = None
    try:
        tracer = attach_strace(proc.pid, strace_args)
        proc.communicate("go\n", timeout=WAIT)
        return proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT)
        if tracer is not None:
            tracer.wait(WAIT)


def temporary_names_of(pids: list) -> list:
    """Names the creators with these pids built under and left in /dev/shm."""
    prefixes = tuple(f".shmimage-{pid}-" for pid in pids)
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefixes))


def remove_names(names: list) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join("/dev/shm", name))


def creation_steps(key: str, grow: bool, log: str) -> list:
    """The (system call, occurrence) steps of one untroubled create/publish/detach."""
    assert run_creator(key, grow, ["-o", log]) == 0
    return traced_steps(log)


def traced_steps(log: str, keep: Callable[[str, str], bool] = lambda name, line: True) -> list:
    """The (system call, occurrence) steps a trace holds after GO_MARKER, of
    the calls `keep(name, line)` accepts."""
    with open(log) as f:
        lines = f.read().splitlines()
    steps, seen, started, previous = [], Counter(), False, ""
    for line in lines:
        match = CALL.match(line)
        if not match:
            continue
        name = match.group(1)
        seen[name] += 1  # strace's when= counts every call since it attached
        if GO_MARKER in line:
            started = True
        elif name == "write" and '"done' in line:
            break
        elif (started and name != "getpid" and not more_of_one_read(previous, line)
              and keep(name, line)):
            steps.append((name, seen[name]))
        previous = line
    return steps


def more_of_one_read(previous: str, line: str) -> bool:
    """A further read() of a file read just before (/proc/locks): how many such
    reads there are depends on what else the machine holds locked, and a read
    changes nothing, so only the first is a step."""
    fd = re.match(r"read\((\d+),", line)
    return fd is not None and previous.startswith(f"read({fd.group(1)},")


def open_afterwards(key: str) -> str:
    """What a later opener finds; it must be able to publish then."""
    with SharedImage(key) as image:
        try:
            frame = image.read()
            assert frame.shape == (64, 64, 4) and uniform(frame), "half-built segment"
            found = "frame"
        except NotFoundError:
            found = "nothing"
        except IncompatibleSegmentError:
            return "refused"
        image.publish(np.full((64, 64, 4), 9, np.uint8), timeout=WAIT)
        assert np.all(image.read() == 9)
    return found




@pytest.mark.parametrize("grow", [
    pytest.param(False, id="create"),
    pytest.param(True, id="create-and-grow"),
])
def test_killed_at_every_step_of_set_up(unique_key, tmp_path, grow: bool) -> None:
    key = unique_key("steps")
    native = SharedImage(key).native_key
    steps = creation_steps(key, grow, str(tmp_path / "trace.txt"))
    assert ("linkat", 1) in steps or ("link", 1) in steps, steps
    outcomes: Counter = Counter()
    pids: list = []
    try:
        for name, nth in steps:
            inject = f"inject={name}:signal=KILL:when={nth}"
            args = ["-o", "/dev/null", "-e", f"trace={name}", "-e", inject]
            code = run_creator(key, grow, args, pids)
            assert code == -9, f"the creator was not killed at {name} #{nth}: {code}"
            outcomes["stale_left"] += os.path.exists("/dev/shm" + native)
            outcomes[open_afterwards(key)] += 1
            assert not os.path.exists("/dev/shm" + native), f"left behind after {name} #{nth}"
        collect_garbage()
        leaked = temporary_names_of(pids)
    finally:
        remove_names(temporary_names_of(pids))  # leave /dev/shm clean, even on failure
    report(f"kill the creator at each step (grow={grow})",
           {"steps": len(steps), "temporary_names_leaked": len(leaked), **outcomes})
    assert outcomes["refused"] == 0
    assert outcomes["stale_left"] > 0  # kills after the link left a segment: it was reclaimed
    assert leaked == [], "a killed build or grow left its temporary name"


#: Calls that change nothing another process can see: a death there is the
#: same as a death at the next call that does.
LOOKS = {"read", "pread64", "close", "newfstatat", "fstat", "stat", "lstat", "statfs",
         "fstatfs", "access", "faccessat2", "getdents64", "lseek", "getpid", "gettid"}


def changes_something(name: str, line: str) -> bool:
    """Can a call change what other processes see? (An openat only when it
    makes a file in /dev/shm.)"""
    return name not in LOOKS and (name != "openat" or "/dev/shm" in line)


def take_all(sub, got: list) -> None:
    """Every frame the subscription has now: (generation, whole)."""
    while True:
        try:
            frame = sub.next(timeout=0.02)
        except TimeoutError:
            return
        got.append((frame.info.generation, uniform(frame.pixels)))
        del frame


def test_a_grower_killed_at_every_step_keeps_lossless_streams_whole(unique_key,
                                                                    tmp_path) -> None:
    """A writer whose large frame grows the store, under a registered lossless
    subscriber, is killed at each system call of its run: another writer
    then goes on, and the subscriber gets every generation, whole, with no
    drop. Whatever the grower had built is gone after the last detach,
    without a gc."""
    key = unique_key("grow-steps")
    log = str(tmp_path / "trace.txt")
    pids: list = []
    with SharedImage(key, history=4) as first:
        first.publish(np.full((8, 8), 1, np.uint8))
        assert run_stepped(f"stepped_grower({key!r})", ["-o", log], pids) == 0
    steps = traced_steps(log, changes_something)
    assert ("rename", 1) in steps and ("linkat", 1) in steps, steps
    outcomes: Counter = Counter()
    try:
        for name, nth in steps:
            got: list = []
            with SharedImage(key, history=4) as first, SharedImage(key) as reader:
                first.publish(np.full((8, 8), 1, np.uint8))
                with reader.subscribe(lossless=True) as sub:
                    inject = f"inject={name}:signal=KILL:when={nth}"
                    code = run_stepped(f"stepped_grower({key!r})",
                                       ["-o", "/dev/null", "-e", f"trace={name}", "-e", inject],
                                       pids)
                    assert code == -9, f"the grower was not killed at {name} #{nth}: {code}"
                    take_all(sub, got)
                    with SharedImage(key) as look:  # the store under the key now
                        outcomes["died grown"] += look.status()["options"]["slot_capacity"] > 4096
                    for i in range(8):
                        first.publish(np.full((8, 8), 100 + i, np.uint8), timeout=WAIT)
                        take_all(sub, got)
                    dropped = sub.dropped
            gens = [g for g, _ in got]
            assert gens == list(range(2, 2 + len(gens))) and len(gens) >= 8, (name, nth, gens)
            assert dropped == 0 and all(whole for _, whole in got), (name, nth)
            assert temporary_names_of(pids) == [], f"left behind after {name} #{nth}"
            outcomes["steps"] += 1
    finally:
        remove_names(temporary_names_of(pids))
    report("kill a grower under a lossless subscriber at each step", dict(outcomes))

