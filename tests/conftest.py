"""Shared fixtures: unique keys, leak checks, child-process bookkeeping."""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from shmimage._shmcore import segment_dir

pytest_plugins = ["pytester"]  # the fixtures' own tests run inner sessions

# Where the core keeps segments: /dev/shm, or the portable build's directory.
SHM_DIR = segment_dir() or "/dev/shm"
JOIN_TIMEOUT = 30.0
GRACE = 2.0  # seconds children get to exit on their own at the end of a test


def _shm_entries() -> set[str]:
    if not os.path.isdir(SHM_DIR):
        return set()
    # multiprocessing's own semaphores ("sem.mp-...") are unlinked by
    # multiprocessing itself when their objects die or at interpreter exit.
    return {name for name in os.listdir(SHM_DIR) if not name.startswith("sem.mp-")}


def _strict_session_check() -> bool:
    # On a shared development machine other people's runs come and go in the
    # same directory; CI runs alone, so there any new entry is a leak.
    flag = os.environ.get("SHMIMAGE_STRICT_SHM", os.environ.get("CI", ""))
    return flag.lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session", autouse=True)
def shm_dir_unchanged() -> Iterator[None]:
    """The whole suite must leave the shared-memory directory as it found it."""
    before = _shm_entries()
    yield
    # The last failure's traceback keeps its frames (and their segments) alive.
    sys.last_type = sys.last_value = sys.last_traceback = None
    if hasattr(sys, "last_exc"):  # Python 3.12+
        sys.last_exc = None
    gc.collect()
    # Entries that vanish within a moment belong to processes still shutting down.
    deadline = time.monotonic() + 3.0
    left = _shm_entries() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _shm_entries() - before
    message = f"the test session left entries in {SHM_DIR}: {sorted(left)}"
    if _strict_session_check():
        assert not left, message
    elif left:
        warnings.warn(f"{message} (set SHMIMAGE_STRICT_SHM=1 to fail on this)", stacklevel=1)


class KeyFactory:
    """Hands out keys no other test (or test run) uses, and remembers them."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.native_keys: list[str] = []

    def __call__(self, label: str = "", prefix: str = "") -> str:
        key = f"{prefix}shmi-test-{label}{uuid.uuid4().hex}"
        self.keys.append(key)
        return key

    def native(self) -> str:
        """A raw POSIX name (for `native_key=`) that is unique to this call."""
        name = "/shmi-t-" + uuid.uuid4().hex[:20]
        self.native_keys.append(name)
        return name

    def leftovers(self) -> list[str]:
        """Remove whatever these keys left behind; return what had to be removed."""
        from shmimage import NotFoundError, SharedMemory

        left: list[str] = []
        for key in self.keys:
            path = os.path.join(SHM_DIR, SharedMemory(key).native_key.lstrip("/"))
            try:
                SharedMemory.remove(key)
            except NotFoundError:
                pass
            else:
                left.append(key)
                continue
            if os.path.exists(path):  # remove() missed it: still a leak
                os.unlink(path)
                left.append(key)
        for name in self.native_keys:
            path = os.path.join(SHM_DIR, name.lstrip("/"))
            if os.path.exists(path):
                os.unlink(path)
                left.append(name)
        return left


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    # Remember each phase's report, so fixtures can tell whether the test failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def unique_key(request: pytest.FixtureRequest) -> Iterator[KeyFactory]:
    """`unique_key()` gives a fresh key; segments the test leaves under them fail it."""
    factory = KeyFactory()
    yield factory
    gc.collect()
    left = factory.leftovers()
    call = getattr(request.node, "report_call", None)
    if left and not (call is not None and call.failed):
        # (A test that already failed may have left them mid-way: cleaned, not reported.)
        pytest.fail(f"test leaked shared memory segments: {left}", pytrace=False)


class Processes:
    """Starts child processes and makes sure none outlives its test."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def start(
        self, target: Callable[..., Any], *args: Any, method: str = "spawn"
    ) -> Any:
        proc = multiprocessing.get_context(method).Process(target=target, args=args)
        proc.daemon = True
        proc.start()
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        # A child that was just told to stop gets a moment to finish cleanly;
        # whatever is still running after that is killed.
        deadline = time.monotonic() + GRACE
        for proc in self.started:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.started:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            proc.join(JOIN_TIMEOUT)


@pytest.fixture
def procs(unique_key: KeyFactory) -> Iterator[Processes]:
    # Depends on unique_key so that children are gone before the leak check runs.
    processes = Processes()
    try:
        yield processes
    finally:
        processes.cleanup()
