"""Foreign, damaged and impossible segments give typed exceptions, never a crash."""
from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from shmimage import (
    AccessMode,
    AlreadyExistsError,
    ErrorCode,
    IncompatibleSegmentError,
    LockError,
    NotFoundError,
    OutOfResourcesError,
    SharedMemory,
    SharedMemoryError,
)
from shmimage.memory import collect_garbage
from workers_memory import WAIT, attach_as_user, exhaust_descriptors, shm_path

HEADER = 4096  # a segment's header is at least this big, then the data


@pytest.fixture
def raw_name(unique_key) -> Iterator[str]:
    """A native name whose file the test writes by hand; removed afterwards."""
    name = unique_key.native()
    yield name
    if os.path.exists(shm_path(name)):
        os.unlink(shm_path(name))


def write_file(name: str, content: bytes) -> None:
    fd = os.open(shm_path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "content",
    [b"", b"\0" * 100, b"\0" * 8192, os.urandom(8192), b"_SHMIMG1" + b"\xff" * 8184],
    ids=["empty", "tiny", "zeros", "random", "magic-then-junk"],
)
@pytest.mark.parametrize("mode", [AccessMode.READ_WRITE, AccessMode.READ_ONLY])
def test_attach_foreign_file(raw_name: str, content: bytes, mode: AccessMode) -> None:
    write_file(raw_name, content)
    shm = SharedMemory(native_key=raw_name)
    with pytest.raises(IncompatibleSegmentError) as info:
        shm.attach(mode)
    assert isinstance(info.value, SharedMemoryError)
    assert not shm.is_attached
    assert shm.error_string != ""
    with open(shm_path(raw_name), "rb") as f:
        assert f.read() == content, "a failed attach must not touch the file"


def test_create_over_foreign_file(raw_name: str) -> None:
    content = os.urandom(5000)
    write_file(raw_name, content)
    with pytest.raises(AlreadyExistsError):
        SharedMemory(native_key=raw_name).create(64)
    with open(shm_path(raw_name), "rb") as f:
        assert f.read() == content


def test_collect_garbage_leaves_foreign_files(raw_name: str) -> None:
    write_file(raw_name, b"\0" * 8192)
    assert raw_name not in collect_garbage()
    assert os.path.exists(shm_path(raw_name))


def persistent_segment(name: str, size: int) -> None:
    shm = SharedMemory(native_key=name)
    shm.create(size, persistent=True)
    shm.detach()


@pytest.mark.parametrize("new_size", [0, 64, HEADER - 1, HEADER, HEADER + 100])
def test_attach_truncated_segment(raw_name: str, new_size: int) -> None:
    persistent_segment(raw_name, 8192)
    os.truncate(shm_path(raw_name), new_size)
    for mode in (AccessMode.READ_WRITE, AccessMode.READ_ONLY):
        with pytest.raises(IncompatibleSegmentError):
            SharedMemory(native_key=raw_name).attach(mode)


def test_attach_segment_with_other_layout_version(raw_name: str) -> None:
    persistent_segment(raw_name, 64)
    with open(shm_path(raw_name), "r+b") as f:
        f.seek(8)  # the version follows the 8-byte magic
        f.write((999).to_bytes(4, "little"))
    with pytest.raises(IncompatibleSegmentError):
        SharedMemory(native_key=raw_name).attach()


FULL_SHM_SCRIPT = """
import os
from shmimage import OutOfResourcesError, SharedMemory

def fill(shm):
    with shm.data as mv:
        mv[:] = b"\\xff" * len(mv)

small, medium = SharedMemory("small"), SharedMemory("medium")
small.create(256 * 1024)
fill(small)
medium.create(600 * 1024)  # fits: about 864 KiB of 1 MiB are now reserved
fill(medium)
for size in (200 * 1024, 800 * 1024, 4 << 20):  # none of these fit any more
    shm = SharedMemory("too-big")
    try:
        shm.create(size)
    except OutOfResourcesError:
        assert not shm.is_attached and shm.size == 0
    else:
        fill(shm)  # without a reservation this is where SIGBUS would strike
        raise SystemExit(f"create({size}) on a full 1 MiB /dev/shm did not fail")
names = sorted(os.listdir("/dev/shm"))
assert names == sorted([small.native_key[1:], medium.native_key[1:]]), names
small.detach()
medium.detach()
assert os.listdir("/dev/shm") == []
print("ok")
"""


def test_full_dev_shm_is_an_exception_not_a_crash() -> None:
    """In a private mount namespace, /dev/shm is a 1 MiB tmpfs that fills up."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private, tiny /dev/shm")
    probe = subprocess.run(
        [unshare, "--mount", "true"], check=False, capture_output=True, timeout=WAIT
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here: {probe.stderr.decode().strip()}")
    shell = 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -c "$1"'
    result = subprocess.run(
        [unshare, "--mount", "sh", "-c", shell, sys.executable, FULL_SHM_SCRIPT],
        check=False, capture_output=True, text=True, timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_create_absurd_size(unique_key) -> None:
    shm = SharedMemory(unique_key())
    with pytest.raises(OutOfResourcesError):
        shm.create(1 << 62)
    assert not os.path.exists(shm_path(shm.native_key))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_other_user_gets_permission_denied(procs, unique_key) -> None:
    key = unique_key()
    ctx = multiprocessing.get_context("spawn")
    with SharedMemory(key) as shm:
        shm.create(64)
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = procs.start(attach_as_user, key, 65534, child_end)
        child_end.close()
        assert parent_end.poll(WAIT), "child sent nothing"
        assert parent_end.recv() == ("PermissionDeniedError", True)
        proc.join(WAIT)
        assert proc.exitcode == 0


def test_running_out_of_descriptors(procs, unique_key) -> None:
    """Qt's attachTooMuch: the limit gives OutOfResourcesError, and nothing is left."""
    prefix = unique_key("fds")
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(exhaust_descriptors, prefix, child_end)
    child_end.close()
    assert parent_end.poll(WAIT), "child sent nothing"
    outcome, count = parent_end.recv()
    proc.join(WAIT)
    assert proc.exitcode == 0
    assert outcome == "OutOfResourcesError"
    assert count > 0
    for i in range(count + 1):
        assert not os.path.exists(shm_path(SharedMemory(f"{prefix}-{i}").native_key))


# -- messages: the user's key first, the native name second --


def test_errors_name_the_key_then_the_native_name(unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    subject = f"{key!r} ({shm.native_key})"
    with pytest.raises(NotFoundError) as missing:
        shm.attach()
    assert str(missing.value) == f"no segment {subject}"
    assert shm.error == ErrorCode.NOT_FOUND and shm.error_string == str(missing.value)
    with pytest.raises(LockError, match=re.escape(subject)):
        shm.lock()
    assert shm.error == ErrorCode.LOCK_ERROR
    with SharedMemory(key) as owner:
        owner.create(64)
        with pytest.raises(AlreadyExistsError) as taken:
            SharedMemory(key).create(64)
        assert str(taken.value).startswith(f"create {subject}: ")
        owner.lock()
        with pytest.raises(LockError, match=re.escape(subject)) as again:
            owner.lock()
        # Noted where the owner keeps its Qt-style error state.
        assert owner.error == ErrorCode.LOCK_ERROR and owner.error_string == str(again.value)
        owner.unlock()
    with pytest.raises(NotFoundError, match=re.escape(f"no segment {subject}")):
        SharedMemory.remove(key)


def test_native_key_only_is_named_once(unique_key) -> None:
    name = unique_key.native()
    with pytest.raises(NotFoundError) as missing:
        SharedMemory(native_key=name).attach()
    assert str(missing.value) == f"no segment {name!r}"
