"""Hostile segments: a shmimage name whose bytes are random, truncated or lying.

A hostile segment is planted as a file that a live "holder" (this process,
through a shared flock) keeps alive, so it is not reclaimed as stale. It is
used from a forked child, so a crash or a hang is a reported outcome, not the
end of the test session. Every entry point must answer with a typed error
(or with a frame that fits), never read outside the mapping, never hang.
"""
from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import functools
import os
import select
import signal
import struct
import traceback
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shmimage import (
    AccessMode,
    IncompatibleSegmentError,
    SharedImage,
    SharedMemory,
    SharedMemoryError,
)
from shmimage._shmcore import segment_dir
from workers_reliability import scaled

# Segments as files: /dev/shm, or the portable build's own directory.
SHM_DIR = segment_dir()
pytestmark = pytest.mark.skipif(SHM_DIR is None, reason="needs segments as files")

HEADER = 4096  # SHMP_HEADER_SIZE
CTRL = HEADER  # the frame store's head (frames.h, layout 3) starts the data area
SUBS = CTRL + 1024  # the lossless subscriber registry, 64 bytes per entry
PINNERS = CTRL + 1024 + 64 * 64  # the pinner registry, 32 bytes per entry
SLOTS = PINNERS + 64 * 32  # the slot table
SLOT_STRIDE = 128  # sizeof(frm_slot)

# (name, offset in the file, struct format) of every field a reader relies on.
FIELDS = [
    ("magic", 0, "<Q"), ("version", 8, "<I"), ("header_size", 12, "<I"),
    ("data_size", 16, "<Q"), ("total_size", 24, "<Q"), ("state", 32, "<I"),
    ("flags", 36, "<I"), ("key_len", 48, "<I"), ("mutex", 512, "<Q"), ("mutex+8", 520, "<Q"),
    ("frm.magic", CTRL, "<Q"), ("frm.version", CTRL + 8, "<I"), ("frm.ctrl_size", CTRL + 12, "<I"),
    ("frm.slot_capacity", CTRL + 16, "<Q"), ("frm.meta_capacity", CTRL + 24, "<I"),
    ("frm.table_slots", CTRL + 28, "<I"), ("frm.slots", CTRL + 32, "<I"),
    ("frm.max_slots", CTRL + 36, "<I"), ("frm.history", CTRL + 40, "<I"),
    ("frm.active_slots", CTRL + 44, "<I"), ("frm.slot_stride", CTRL + 48, "<Q"),
    ("frm.latest", CTRL + 56, "<Q"), ("frm.last_generation", CTRL + 64, "<Q"),
    ("frm.seq", CTRL + 72, "<I"), ("frm.waiters", CTRL + 76, "<I"),
    ("frm.ring0", CTRL + 512, "<Q"), ("frm.ring1", CTRL + 520, "<Q"),
    ("sub0.state", SUBS, "<I"), ("sub0.next_generation", SUBS + 16, "<Q"),
    ("sub0.flags", SUBS + 24, "<I"),
    ("pin0.pid", PINNERS, "<I"), ("pin0.pins", PINNERS + 4, "<I"),
    ("pin0.slots", PINNERS + 8, "<Q"), ("frm.min_capacity", CTRL + 96, "<Q"),
    ("frm.small_run", CTRL + 104, "<I"),
] + [
    (f"slot{i}.{name}", SLOTS + SLOT_STRIDE * i + off, fmt)
    for i in range(3)
    for name, off, fmt in [
        ("state", 0, "<I"), ("ndim", 4, "<I"), ("shape0", 8, "<Q"), ("shape1", 16, "<Q"),
        ("shape2", 24, "<Q"), ("shape3", 32, "<Q"), ("dtype", 40, "<I"), ("flags", 44, "<I"),
        ("nbytes", 48, "<Q"), ("generation", 56, "<Q"), ("meta_len", 76, "<I"),
    ]
]
PROBE_TIMEOUT = 10.0


def template(key: str, shape: tuple = (48, 64, 4)) -> bytes:
    """The bytes of a real segment holding one frame of `shape`."""
    with SharedImage(key, capacity=4096) as image:
        image.publish(np.full(shape, 3, np.uint8))
        with open(shm_path(image.native_key), "rb") as f:
            return f.read()


def shm_path(native_key: str) -> str:
    return f"{SHM_DIR}{native_key}"


def mutate(raw: bytes, changes: list, size: int | None = None) -> bytes:
    """Set fields (by FIELDS index) to values, then cut or pad to `size`."""
    out = bytearray(raw)
    for index, value in changes:
        _, offset, fmt = FIELDS[index]
        bits = struct.calcsize(fmt) * 8
        if offset + struct.calcsize(fmt) <= len(out):
            struct.pack_into(fmt, out, offset, value % (1 << bits))
    if size is not None:
        out = out[:size] + bytes(max(0, size - len(out)))
    return bytes(out)


@contextlib.contextmanager
def planted(native_key: str, raw: bytes, hold: bool = True) -> Iterator[str]:
    """`raw` as the segment under `native_key`, held alive by this process."""
    path = shm_path(native_key)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.write(fd, raw)
        if hold:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield path
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _typed(calls: list) -> list:
    """Run calls; typed errors are fine, anything else is collected."""
    bad = []
    for call in calls:
        try:
            call()
        except (SharedMemoryError, TimeoutError):
            pass
        except Exception:  # noqa: BLE001 - the point is to report it
            bad.append(traceback.format_exc(limit=3))
    return bad


def _touch_memory(native_key: str, mode: AccessMode) -> None:
    with SharedMemory(native_key=native_key) as shm:
        shm.attach(mode)
        data = shm.data
        if len(data):
            _ = data[0], data[-1]
        data.release()


def _view_sum(image: SharedImage) -> None:
    with image.view() as view:
        view.sum()


def operations(key: str) -> list:
    """Every public entry point a reader or writer of `key` would use."""
    image = SharedImage(key)
    native = image.native_key
    return [
        lambda: _touch_memory(native, AccessMode.READ_WRITE),
        lambda: _touch_memory(native, AccessMode.READ_ONLY),
        image.info,
        image.read,
        lambda: _view_sum(image),
        lambda: image.wait(timeout=0.01, after=0),
        lambda: image.publish(np.zeros((4, 4), np.uint8), timeout=0.05),
        lambda: image.publish(np.zeros((64, 64, 4), np.uint8), timeout=0.05),
        image.detach,
    ]


def probe(key: str) -> tuple[str, str]:
    """Use the segment under `key` in a forked child: ("ok" | "untyped" |
    "crash" | "hang", details)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        faulthandler.disable()  # a crash is the parent's finding, not a traceback here
        code = 0
        try:
            bad = _typed(operations(key))
            if bad:
                os.write(write_fd, "\n".join(bad).encode()[:60000])
                code = 2
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], PROBE_TIMEOUT)
        details = os.read(read_fd, 65536).decode(errors="replace") if ready else ""
    finally:
        os.close(read_fd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if not ready:
        return "hang", "no answer within the watchdog"
    if os.WIFSIGNALED(status):
        return "crash", f"killed by signal {os.WTERMSIG(status)}"
    return ("ok", "") if os.WEXITSTATUS(status) == 0 else ("untyped", details)


# --- the tests ----------------------------------------------------------------------

HYPOTHESIS = settings(
    max_examples=scaled(150), deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEMPLATE_KEY = "shmi-reliability-template"
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 255, 256, 1151, 1152, 4095, 4096, 4097, 2**31 - 1,
               2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


@functools.lru_cache(maxsize=1)
def real_segment() -> bytes:
    """A real segment's bytes (a function, not a fixture: hypothesis would print it)."""
    return template(TEMPLATE_KEY)


def assert_survives(key: str, raw: bytes) -> None:
    with planted(SharedImage(key).native_key, raw):
        outcome, details = probe(key)
    assert outcome == "ok", details


values = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1))
changes = st.lists(st.tuples(st.integers(0, len(FIELDS) - 1), values), min_size=1, max_size=4)
sizes = st.one_of(st.none(), st.sampled_from([0, 1, 55, 4095, 4096, 4097, 5000, 8191, 8192,
                                               7168 + HEADER, 8192 + HEADER]),
                  st.integers(0, 300000))


@HYPOTHESIS
@given(changes=changes, size=sizes)
def test_lying_headers_give_typed_errors(unique_key, changes, size) -> None:
    raw = mutate(real_segment(), changes, size)
    assert_survives(unique_key(), raw)


@HYPOTHESIS
@given(raw=st.binary(min_size=0, max_size=9000), hold=st.booleans())
def test_random_bytes_give_typed_errors(unique_key, raw, hold) -> None:
    key = unique_key()
    with planted(SharedImage(key).native_key, raw, hold):
        outcome, details = probe(key)
    assert outcome == "ok", details


@HYPOTHESIS
@given(prefix=st.one_of(st.integers(0, 16384), st.integers(0, 300000)),
       noise=st.binary(min_size=0, max_size=64))
def test_truncated_or_trailing_junk(unique_key, prefix, noise) -> None:
    raw = real_segment()[:prefix] + noise
    assert_survives(unique_key(), raw)


def field(name: str) -> int:
    return [f[0] for f in FIELDS].index(name)


V1_MAGIC = 0x314D5246494D4853  # "SHMIFRM1": an earlier frame layout
V2_MAGIC = 0x324D5246494D4853  # "SHMIFRM2": the frame layout before this one

HALF_BUILT = {
    "building": [(field("state"), 0)],
    "magic only": [(field("version"), 0), (field("header_size"), 0), (field("state"), 0)],
    "other version": [(field("version"), 2)],
    "size beyond file": [(field("data_size"), 1 << 30), (field("total_size"), 4096 + (1 << 30))],
    "sizes disagree": [(field("total_size"), 4096)],
    "no frame magic": [(field("frm.magic"), 0)],
    "frame layout 1": [(field("frm.magic"), V1_MAGIC), (field("frm.version"), 1)],
    "frame layout 2": [(field("frm.magic"), V2_MAGIC), (field("frm.version"), 2)],
    "frame layout 4": [(field("frm.version"), 4)],
    "too many slots": [(field("frm.table_slots"), 200)],
    "max_slots beyond the bound": [(field("frm.max_slots"), 200), (field("frm.table_slots"), 201)],
    "no slots": [(field("frm.slots"), 0)],
    "slots above max_slots": [(field("frm.slots"), 17)],
    "no history": [(field("frm.history"), 0), (field("frm.table_slots"), 2)],
    "history beyond the bound": [(field("frm.history"), 65), (field("frm.table_slots"), 67)],
    "odd slot size": [(field("frm.slot_capacity"), 4095)],
    "slots beyond the file": [(field("frm.slot_capacity"), 1 << 40),
                              (field("frm.slot_stride"), (1 << 40) + 65536)],
    "stride disagrees": [(field("frm.slot_stride"), 4096)],
    "metadata area beyond 64 KiB": [(field("frm.meta_capacity"), 1 << 17)],
    "slots elsewhere": [(field("frm.ctrl_size"), 1 << 30)],
}


@pytest.mark.parametrize("case", sorted(HALF_BUILT))
def test_half_built_or_foreign_segment_is_refused(unique_key, case) -> None:
    key = unique_key()
    raw = mutate(real_segment(), HALF_BUILT[case])
    with planted(SharedImage(key).native_key, raw):
        with pytest.raises(IncompatibleSegmentError):
            SharedImage(key).read()
        outcome, details = probe(key)
    assert outcome == "ok", details


LYING_FRAMES = {
    "latest names slot 200": [(field("frm.latest"), (1 << 8) | 201)],
    "latest names slot 0": [(field("frm.latest"), 1 << 8)],
    "huge shape": [(field("slot0.shape0"), 2**40)],
    "shape overflows": [(field("slot0.shape0"), 2**63), (field("slot0.shape1"), 4)],
    "zero shape": [(field("slot0.shape1"), 0)],
    "channels beyond the slot": [(field("slot0.shape2"), 2**20)],
    "fourth dimension beyond the slot": [(field("slot0.ndim"), 4), (field("slot0.shape3"), 2**20)],
    "ndim 7": [(field("slot0.ndim"), 7)],
    "ndim 1": [(field("slot0.ndim"), 1)],
    "unknown dtype code": [(field("slot0.dtype"), 200)],
    "no dtype": [(field("slot0.dtype"), 0)],
    "metadata beyond its area": [(field("slot0.meta_len"), 1 << 20)],
    "generation other than latest's": [(field("slot0.generation"), 99)],
    "latest names a slot being written": [(field("slot0.state"), 1)],
}


@pytest.mark.parametrize("case", sorted(LYING_FRAMES))
def test_lying_frame_is_refused(unique_key, case) -> None:
    key = unique_key()
    raw = mutate(real_segment(), LYING_FRAMES[case])
    with planted(SharedImage(key).native_key, raw):
        with pytest.raises(IncompatibleSegmentError):
            SharedImage(key).read()
        outcome, details = probe(key)
    assert outcome == "ok", details


@pytest.mark.parametrize("case", sorted(LYING_FRAMES))
def test_a_frame_that_turns_into_a_lie_is_refused(unique_key, case) -> None:
    """What a reader checked once is checked again when the header changes under it."""
    key = unique_key()
    raw = real_segment()
    with planted(SharedImage(key).native_key, raw) as path, SharedImage(key) as image:
        assert image.read().shape == (48, 64, 4)
        with image.view() as pixels:
            assert pixels.shape == (48, 64, 4)
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, mutate(raw, LYING_FRAMES[case]), 0)
            with pytest.raises(IncompatibleSegmentError):
                image.read()
            with pytest.raises(IncompatibleSegmentError), image.view():
                pass
            os.pwrite(fd, raw, 0)
        finally:
            os.close(fd)
        assert image.read().shape == (48, 64, 4)


def test_half_built_segment_does_not_hang_a_creator(unique_key) -> None:
    """A live process sits on a half-built segment: create/publish refuse at once."""
    key = unique_key()
    raw = mutate(real_segment(), HALF_BUILT["building"])
    with planted(SharedImage(key).native_key, raw):
        with pytest.raises((IncompatibleSegmentError, SharedMemoryError)):
            SharedImage(key).publish(np.zeros((4, 4), np.uint8), timeout=1.0)
        with pytest.raises(SharedMemoryError):
            SharedMemory(key).create(4096)


def test_data_area_smaller_than_the_control_block(unique_key) -> None:
    data = 6000  # the head fits, the slot table does not
    raw = mutate(real_segment(), [(field("data_size"), data), (field("total_size"), 4096 + data),
                                (field("frm.slot_capacity"), 1 << 20),
                                (field("frm.latest"), (1 << 8) | 3)], 4096 + data)
    raw = bytearray(raw)
    slot2 = SLOTS + 2 * SLOT_STRIDE
    raw[slot2:slot2 + SLOT_STRIDE] = raw[SLOTS:SLOTS + SLOT_STRIDE]
    assert_survives(unique_key(), bytes(raw))


def test_superseded_flag_under_the_name_does_not_hang(unique_key) -> None:
    assert_survives(unique_key(), mutate(real_segment(), [(field("flags"), 2)]))


WRITER_LIES = {
    "active slots beyond the table": [(field("frm.active_slots"), 1000)],
    "active slots below the start": [(field("frm.active_slots"), 1)],
}


@pytest.mark.parametrize("case", sorted(WRITER_LIES))
def test_lying_writer_fields_are_refused(unique_key, case) -> None:
    """Fields only a writer uses: publish refuses, readers still read."""
    key = unique_key()
    raw = mutate(real_segment(), WRITER_LIES[case])
    with planted(SharedImage(key).native_key, raw):
        with SharedImage(key) as image:
            assert image.read().shape == (48, 64, 4)
            with pytest.raises(IncompatibleSegmentError):
                image.publish(np.zeros((48, 64, 4), np.uint8), timeout=1.0)
        outcome, details = probe(key)
    assert outcome == "ok", details


@pytest.mark.parametrize("ring", [(1 << 8) | 201, (5 << 8) | 2, 2**64 - 1])
def test_lying_history_ring_does_not_break_a_writer(unique_key, ring) -> None:
    """The ring names kept frames; whatever it says, a publish stays in bounds."""
    key = unique_key()
    raw = mutate(real_segment(), [(field("frm.ring0"), ring)])
    with planted(SharedImage(key).native_key, raw):
        with SharedImage(key) as image:
            assert image.publish(np.full((48, 64, 4), 7, np.uint8), timeout=1.0) == 2
            assert (image.read() == 7).all()
        outcome, details = probe(key)
    assert outcome == "ok", details
