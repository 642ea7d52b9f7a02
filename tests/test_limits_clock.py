"""Timed waits must run on the monotonic clock: a wall-clock jump (NTP, an
administrator's `date -s`) must neither cut a `lock(timeout)` or `wait(timeout)`
short nor stretch it.

Setting the system clock would disturb everything else on the machine, and a
time namespace (`unshare --time`) offsets only the monotonic clocks, not the
wall clock. So the waits run under strace instead, and every system call that
can sleep with a timeout must name no CLOCK_REALTIME (a futex with
FUTEX_CLOCK_REALTIME, clock_nanosleep on CLOCK_REALTIME): relative futex and
poll timeouts and absolute CLOCK_MONOTONIC deadlines are immune to a jump.
(clock_gettime itself goes through the vDSO and is invisible to strace.)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from shmimage import SharedImage, SharedMemory

STRACE = shutil.which("strace")
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
    pytest.mark.skipif(STRACE is None, reason="needs strace"),
]
SLEEPING = ("futex", "clock_nanosleep", "nanosleep", "ppoll", "poll", "pselect6", "select",
            "epoll_wait", "epoll_pwait", "epoll_pwait2", "semtimedop", "rt_sigtimedwait",
            "timerfd_settime", "timer_settime")
TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[list[str], list[list[str]]]:
    """What each of the three timed waits (see workers_limits.timed_waits) ended
    with, and the system calls it made."""
    key = f"shmi-test-clock-{os.getpid()}"
    held_key, image_key, missing_key = key + "-held", key + "-image", key + "-missing"
    log = tmp_path_factory.mktemp("strace") / "log"
    with SharedMemory(held_key) as held, SharedImage(image_key) as image:
        held.create(4096)
        image.publish(np.zeros((4, 4), np.uint8))
        assert held.lock()
        try:
            code = (f"from workers_limits import timed_waits; "
                    f"timed_waits({held_key!r}, {image_key!r}, {missing_key!r}, 0.3)")
            run = subprocess.run(
                [STRACE, "-f", "-qq", "-o", str(log), "-e", "trace=getcwd," + ",".join(SLEEPING),
                 sys.executable, "-c", code],
                cwd=TESTS, capture_output=True, text=True, timeout=120, check=False,
            )
        finally:
            held.unlock()
    assert run.returncode == 0, run.stderr
    outcomes = run.stdout.split()
    # A wait() for a missing key raises NotFoundError until it waits for the key to appear.
    assert outcomes[:2] == ["bool", "TimeoutError"], run.stdout
    assert outcomes[2] in ("NotFoundError", "TimeoutError"), run.stdout
    lines = log.read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if "getcwd(" in line][-4:]  # the waits' markers
    return outcomes, [lines[a + 1:b] for a, b in zip(marks, marks[1:])]


def timed_sleeps(lines: list[str]) -> list[str]:
    """The calls that slept with a timeout (a futex wait with a timespec, poll with one)."""
    return [line for line in lines
            if ("futex(" in line and "FUTEX_WAIT" in line and "NULL" not in line.split(",")[3])
            or line.split("(")[0].split()[-1] in ("clock_nanosleep", "nanosleep", "poll", "ppoll",
                                                  "epoll_wait", "epoll_pwait", "pselect6")]


def realtime(lines: list[str]) -> list[str]:
    """Timed sleeps whose deadline is on the wall clock (untimed ones name it harmlessly)."""
    return [line for line in timed_sleeps(lines) if "CLOCK_REALTIME" in line]


def test_timed_lock_sleeps_on_the_monotonic_clock(traced) -> None:
    lock = traced[1][0]
    assert timed_sleeps(lock), f"lock(timeout) did not sleep in the kernel: {lock}"
    assert realtime(lock) == []


def test_timed_wait_sleeps_on_the_monotonic_clock(traced) -> None:
    wait = traced[1][1]
    assert timed_sleeps(wait), f"wait(timeout) did not sleep in the kernel: {wait}"
    assert realtime(wait) == []


def test_timed_wait_for_a_missing_key_sleeps_on_the_monotonic_clock(traced) -> None:
    outcomes, sections = traced
    if outcomes[2] == "TimeoutError":  # it waited for the key to appear
        assert timed_sleeps(sections[2]), f"wait(timeout) did not sleep: {sections[2]}"
    assert realtime(sections[2]) == []
