"""shmimage.qt against the real thing: PySide6's QSharedMemory in spawned
processes, both ways, with Qt's System V (legacy key) and POSIX (native key)
backends. Every test leaves /dev/shm, the temp directory and the System V
tables as it found them."""
from __future__ import annotations

import hashlib
import importlib.util
import multiprocessing
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import workers_qt
from PIL import Image
from shmimage import (
    AlreadyExistsError,
    InvalidImageError,
    InvalidKeyError,
    NoFrameError,
    NotFoundError,
    _qtipc,
)
from shmimage.qt import (
    QtSharedImage,
    decode_qimage_stream,
    encode_qimage_stream,
    legacy_suffix,
    posix_names,
    sysv_names,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="System V and POSIX only")

WAIT = 60.0  # bound for every get/join: a hung child fails the test, never hangs it
SHM_DIR = Path("/dev/shm")
QT_FTOK_PROJECT = ord("Q")


# -- environment -----------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Qt tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def qt_available() -> str:
    """PySide6's QtGui starts offscreen in a spawned process (probed once)."""
    if importlib.util.find_spec("PySide6") is None:
        _unavailable("PySide6 is not installed (pip install PySide6-Essentials)")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=workers_qt.probe, args=(results,), daemon=True)
    proc.start()
    try:
        status, detail = results.get(timeout=WAIT)
    except queue_module.Empty:
        status, detail = "error", "the probe process did not answer"
    finally:
        proc.join(WAIT)
        if proc.is_alive():
            proc.kill()
            proc.join(WAIT)
    if status != "ok":
        _unavailable(f"PySide6's QtGui does not start offscreen: {detail}")
    return detail


def _sysv_ipc() -> set[tuple[str, int, int]]:
    """System V objects on this machine: (kind, key, id)."""
    found = set()
    for kind in ("shm", "sem"):
        path = Path("/proc/sysvipc") / kind
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                fields = line.split()
                found.add((kind, int(fields[0]), int(fields[1])))
    return found


def _ftok(path: Path) -> int:
    """ftok(path, 'Q') as glibc computes it."""
    st = path.stat()
    return ((QT_FTOK_PROJECT & 0xFF) << 24 | (st.st_dev & 0xFF) << 16 | (st.st_ino & 0xFFFF))


def _remove_sysv_ipc(kind: str, ident: int) -> None:
    flag = "-m" if kind == "shm" else "-s"
    subprocess.run(["ipcrm", flag, str(ident)], check=False, capture_output=True)


class QtWorld:
    """One test's key, temp directory and child processes, and the leak check."""

    def __init__(self, key: str, tmp: Path) -> None:
        self.key = key
        self.tmp = tmp
        self.ctx = multiprocessing.get_context("spawn")
        self.children: list[Any] = []
        self.ipc_before = _sysv_ipc()
        self.ipc_keys: set[int] = set()

    def note_keys(self) -> None:
        """Remember the System V keys of this test's key files while they exist
        (other programs on the machine may use Qt's IPC at the same time)."""
        for path in self.tmp.iterdir():
            if path.name.startswith("qipc_"):
                self.ipc_keys.add(_ftok(path))

    def start(self, target: Callable[..., Any], *args: Any) -> Any:
        proc = self.ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        self.children.append(proc)
        return proc

    def kill_children(self) -> None:
        for proc in self.children:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            proc.join(WAIT)

    def leftovers(self) -> list[str]:
        """Remove whatever this test left behind; say what it was."""
        left = []
        for name in (self.key, "sem." + self.key):
            if (SHM_DIR / name).exists():
                (SHM_DIR / name).unlink()
                left.append(str(SHM_DIR / name))
        for kind, key, ident in _sysv_ipc() - self.ipc_before:
            if key not in self.ipc_keys:
                continue
            _remove_sysv_ipc(kind, ident)
            left.append(f"System V {kind} key {key:#x}")
        for path in self.tmp.iterdir():
            path.unlink()
            left.append(str(path))
        return left


@pytest.fixture
def world(qt_available: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[QtWorld]:
    """A fresh Qt key; Qt's temp dir ($TMPDIR, inherited by the children) is
    private to the test, so key files are checked exactly."""
    tmp = tmp_path / "qt-tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    qt = QtWorld("shmimageqt" + uuid.uuid4().hex[:16], tmp)
    try:
        yield qt
    finally:
        qt.note_keys()
        qt.kill_children()
        left = qt.leftovers()
    if left:
        pytest.fail(f"the test left Qt IPC objects behind: {left}", pytrace=False)


def _get(results: Any, world: QtWorld | None = None) -> tuple:
    try:
        message = results.get(timeout=WAIT)
    except queue_module.Empty:
        pytest.fail("the Qt process did not answer in time")
    if world is not None:
        world.note_keys()
    if message[0] == "error":
        pytest.fail(f"the Qt process failed:\n{message[1]}")
    return message


def _finish(proc: Any) -> None:
    proc.join(WAIT)
    assert proc.exitcode == 0, f"the Qt process exited with {proc.exitcode}"


def _remove_qt_posix_leak(world: QtWorld, backend: str) -> None:
    """Qt never unlinks the POSIX segments it creates (a known Qt leak)."""
    if backend == "posix":
        assert QtSharedImage.remove(world.key, backend="posix")


def _pixels(rgba: tuple[int, int, bytes]) -> np.ndarray:
    width, height, data = rgba
    return np.frombuffer(data, np.uint8).reshape(height, width, 4)


# -- images ----------------------------------------------------------------------


def _gradient(width: int, height: int, seed: int, alpha: bool = True) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    px = np.empty((height, width, 4), np.uint8)
    px[..., 0] = (x * 7 + seed) % 256
    px[..., 1] = (y * 5 + seed * 3) % 256
    px[..., 2] = (x * y + seed) % 256
    px[..., 3] = (x + y * 3) % 256 if alpha else 255
    return px


@pytest.fixture
def image_a(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(_gradient(61, 37, 1)).save(path)
    return path


@pytest.fixture
def image_b(tmp_path: Path) -> Path:
    path = tmp_path / "b.png"
    Image.fromarray(_gradient(23, 45, 2)).save(path)
    return path


def _file_rgba(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"))


BOTH = pytest.mark.parametrize("backend", ["sysv", "posix"])


# -- Qt -> shmimage --------------------------------------------------------------


@BOTH
def test_shmimage_reads_what_the_qt_example_loaded(world: QtWorld, backend: str,
                                                   image_a: Path) -> None:
    results, done = world.ctx.Queue(), world.ctx.Event()
    proc = world.start(workers_qt.load_from_file, world.key, backend, str(image_a), results, done)
    _, qt_rgba, native_key = _get(results, world)
    expected = sysv_names(world.key)[0] if backend == "sysv" else posix_names(world.key)[0]
    assert native_key == expected

    for how in (backend, "auto"):
        pixels = QtSharedImage(world.key, backend=how).read()
        assert pixels.dtype == np.uint8 and pixels.shape == (37, 61, 4)
        np.testing.assert_array_equal(pixels, _pixels(qt_rgba))
    np.testing.assert_array_equal(pixels, _file_rgba(image_a))
    done.set()
    _finish(proc)
    _remove_qt_posix_leak(world, backend)


def test_shmimage_reads_the_bundled_sample_from_qt(world: QtWorld) -> None:
    import shmimage

    sample = Path(shmimage.__file__).parent / "data" / "sample.png"
    results, done = world.ctx.Queue(), world.ctx.Event()
    proc = world.start(workers_qt.load_from_file, world.key, "posix", str(sample), results, done)
    _, qt_rgba, _ = _get(results, world)
    np.testing.assert_array_equal(QtSharedImage(world.key).read(), _pixels(qt_rgba))
    done.set()
    _finish(proc)
    _remove_qt_posix_leak(world, "posix")


# -- shmimage -> Qt --------------------------------------------------------------


def _qt_reads(world: QtWorld, backend: str) -> np.ndarray:
    results = world.ctx.Queue()
    proc = world.start(workers_qt.load_from_memory, world.key, backend, results)
    _, rgba = _get(results, world)
    _finish(proc)
    return _pixels(rgba)


@pytest.mark.parametrize("backend,qt_backend", [
    ("sysv", "sysv"), ("posix", "posix"), ("auto", "posix")])
def test_the_qt_example_reads_what_shmimage_published(world: QtWorld, backend: str,
                                                      qt_backend: str) -> None:
    first, smaller, bigger = _gradient(64, 48, 3), _gradient(8, 5, 4), _gradient(90, 70, 5)
    with QtSharedImage(world.key, backend=backend) as shared:
        shared.publish(first)
        np.testing.assert_array_equal(_qt_reads(world, qt_backend), first)
        shared.publish(smaller)  # fits: same segment, zeroed tail
        np.testing.assert_array_equal(_qt_reads(world, qt_backend), smaller)
        shared.publish(Image.fromarray(bigger))  # does not fit: a new segment
        np.testing.assert_array_equal(_qt_reads(world, qt_backend), bigger)
    with pytest.raises(NotFoundError):
        QtSharedImage(world.key, backend=backend).read()


@BOTH
def test_qt_reads_gray_and_rgb_arrays(world: QtWorld, backend: str) -> None:
    gray = _gradient(30, 20, 6)[..., 0].copy()
    rgb = _gradient(30, 20, 7)[..., :3]  # not contiguous
    with QtSharedImage(world.key, backend=backend) as shared:
        shared.publish(gray)
        got = _qt_reads(world, backend)
        np.testing.assert_array_equal(got[..., :3], np.repeat(gray[..., None], 3, axis=2))
        assert (got[..., 3] == 255).all()
        shared.detach()
        shared.publish(rgb)
        got = _qt_reads(world, backend)
        np.testing.assert_array_equal(got[..., :3], rgb)
        assert (got[..., 3] == 255).all()


# -- Qt's lock -------------------------------------------------------------------


@BOTH
def test_qt_lock_makes_shmimage_wait(world: QtWorld, backend: str, image_a: Path,
                                     image_b: Path) -> None:
    results, swap, done = world.ctx.Queue(), world.ctx.Event(), world.ctx.Event()
    proc = world.start(workers_qt.hold_lock_then_swap, world.key, backend, str(image_a),
                       str(image_b), results, swap, done)
    status, second = _get(results, world)
    assert status == "locked"
    shared = QtSharedImage(world.key, backend=backend)
    with pytest.raises(TimeoutError):
        shared.read(timeout=0.2)

    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(shared.read(timeout=WAIT)))
    reader.start()
    swap.set()  # Qt rewrites the segment while it still holds the lock
    reader.join(WAIT)
    assert not reader.is_alive()
    assert _get(results, world) == ("swapped",)
    np.testing.assert_array_equal(got[0], _pixels(second))
    done.set()
    _finish(proc)
    _remove_qt_posix_leak(world, backend)


def _killed_holder(world: QtWorld, backend: str, image: Path, locked: bool) -> np.ndarray:
    results = world.ctx.Queue()
    proc = world.start(workers_qt.create_and_hang, world.key, backend, str(image), locked,
                       results)
    _, rgba = _get(results, world)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(WAIT)
    assert proc.exitcode == -signal.SIGKILL
    return _pixels(rgba)


def test_posix_lock_of_a_killed_qt_holder_times_out(world: QtWorld, image_a: Path) -> None:
    _killed_holder(world, "posix", image_a, locked=True)
    with pytest.raises(TimeoutError):
        QtSharedImage(world.key, backend="posix", timeout=0.2).read()
    assert QtSharedImage.remove(world.key, backend="posix")
    assert not (SHM_DIR / world.key).exists() and not (SHM_DIR / f"sem.{world.key}").exists()


def test_sysv_lock_of_a_killed_qt_holder_is_undone(world: QtWorld, image_a: Path) -> None:
    expected = _killed_holder(world, "sysv", image_a, locked=True)
    np.testing.assert_array_equal(QtSharedImage(world.key, backend="sysv").read(), expected)
    # The last detach removed the segment the dead process left, as Qt does.
    with pytest.raises(NotFoundError):
        QtSharedImage(world.key, backend="sysv").read()
    QtSharedImage.remove(world.key, backend="sysv")  # the semaphore it left


def test_sysv_publish_reclaims_the_segment_of_a_killed_qt(world: QtWorld, image_a: Path) -> None:
    _killed_holder(world, "sysv", image_a, locked=False)
    pixels = _gradient(16, 16, 8)
    with QtSharedImage(world.key, backend="sysv") as shared:
        shared.publish(pixels)
        np.testing.assert_array_equal(_qt_reads(world, "sysv"), pixels)
    assert not QtSharedImage.remove(world.key, backend="sysv")  # the dead one's semaphore


@BOTH
def test_publish_refuses_a_live_qt_segment(world: QtWorld, backend: str, image_a: Path) -> None:
    results, done = world.ctx.Queue(), world.ctx.Event()
    proc = world.start(workers_qt.load_from_file, world.key, backend, str(image_a), results, done)
    _get(results, world)
    with pytest.raises(AlreadyExistsError):
        QtSharedImage(world.key, backend=backend).publish(_gradient(4, 4, 9))
    if backend == "sysv":
        with pytest.raises(AlreadyExistsError):
            QtSharedImage.remove(world.key, backend="sysv")  # Qt is attached
    done.set()
    _finish(proc)
    _remove_qt_posix_leak(world, backend)


@BOTH
def test_publisher_survives_qt_removing_the_semaphore(world: QtWorld, backend: str) -> None:
    with QtSharedImage(world.key, backend=backend) as shared:
        shared.publish(_gradient(20, 20, 12))
        results = world.ctx.Queue()
        proc = world.start(workers_qt.try_create, world.key, backend, results)
        _, created, error = _get(results, world)
        _finish(proc)
        assert not created, error
        second = _gradient(20, 20, 13)
        shared.publish(second)  # same segment: takes the (reopened) semaphore
        if backend == "posix":  # Qt unlinked the name; shmimage made it anew
            assert (SHM_DIR / f"sem.{world.key}").exists()
        np.testing.assert_array_equal(_qt_reads(world, backend), second)


@BOTH
def test_the_example_buttons_in_one_process(world: QtWorld, backend: str, image_a: Path) -> None:
    writer = QtSharedImage(world.key, backend=backend)
    pixels = writer.load_from_file(image_a)
    np.testing.assert_array_equal(pixels, _file_rgba(image_a))
    assert writer.is_attached and "attached" in repr(writer)
    reader = QtSharedImage(world.key, backend=backend)
    np.testing.assert_array_equal(reader.load_from_memory(), pixels)
    assert reader.to_pil().size == (61, 37)
    assert not reader.is_attached and not reader.detach()
    assert writer.detach() and not writer.detach()
    with pytest.raises(NotFoundError):
        reader.read()


# -- the bytes -------------------------------------------------------------------


def test_every_qdatastream_version_decodes(qt_available: str, tmp_path: Path) -> None:
    path = tmp_path / "opaque.png"
    Image.fromarray(_gradient(19, 11, 10, alpha=False)).save(path)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=workers_qt.stream_versions, args=(str(path), [1, 4, 5, 0], results),
                       daemon=True)
    proc.start()
    try:
        _, rgba, streams = _get(results)
    finally:
        proc.join(WAIT)
    assert streams[1][:2] == b"BM" and streams[4][:4] == b"\x89PNG"
    assert streams[5][:4] == streams[0][:4] == b"\x00\x00\x00\x01"
    for version, data in streams.items():
        padded = data + bytes(100)  # a segment is often bigger than its image
        np.testing.assert_array_equal(decode_qimage_stream(padded), _pixels(rgba),
                                      err_msg=f"stream version {version}")


def _raw_segment(key: str, backend: str, data: bytes) -> Any:
    names = sysv_names(key) if backend == "sysv" else posix_names(key)
    cls = _qtipc.SysVSegment if backend == "sysv" else _qtipc.PosixSegment
    segment = cls(*names)
    segment.open_lock(create=True)
    segment.lock(WAIT)
    segment.create(len(data))
    segment.write(data)
    segment.unlock()
    return segment


PNG = b"\x89PNG\r\n\x1a\n"


@BOTH
@pytest.mark.parametrize("data,error", [
    (b"\x00\x00\x00\x00", NoFrameError),
    (bytes(64), NoFrameError),  # created, nothing copied in yet
    (b"\x00\x00\x00\x01" + b"not a png at all", InvalidImageError),
    (b"\x00\x00\x00\x01" + PNG + b"\x00\x00\x00\x0dIHDR", InvalidImageError),  # truncated
    (b"GIF89a garbage", InvalidImageError),
    (b"\x00\x00", InvalidImageError),
])
def test_bad_bytes_raise_typed_errors(world: QtWorld, backend: str, data: bytes,
                                      error: type) -> None:
    segment = _raw_segment(world.key, backend, data)
    world.note_keys()
    try:
        with pytest.raises(error):
            QtSharedImage(world.key, backend=backend).read()
    finally:
        segment.release()
        segment.close_lock()


# -- names and arguments -----------------------------------------------------------


def test_qt_legacy_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/var/tmp/")
    shm, sem = sysv_names("QSharedMemoryExample")
    assert shm == ("/var/tmp/qipc_sharedmemory_QSharedMemoryExample"
                   "ff77196351dd7c1c8f79461ad32f21726fe31f5b")
    assert sem == shm.replace("qipc_sharedmemory_", "qipc_systemsem_")
    monkeypatch.delenv("TMPDIR")
    monkeypatch.setenv("TMP", "/elsewhere")  # Qt reads TMPDIR only
    assert sysv_names("k")[0].startswith("/tmp/qipc_sharedmemory_k")
    assert legacy_suffix("Noël 2") == "Nol" + hashlib.sha1("Noël 2".encode()).hexdigest()
    assert posix_names("QSharedMemoryExample") == ("/QSharedMemoryExample",) * 2


@pytest.mark.parametrize("backend", ["auto", "sysv", "posix"])
def test_missing_segment_is_not_found(world: QtWorld, backend: str) -> None:
    with pytest.raises(NotFoundError):
        QtSharedImage(world.key, backend=backend).read()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        QtSharedImage("k", backend="dbus")
    with pytest.raises(ValueError):
        QtSharedImage("k", backend="windows")  # not on this OS
    with pytest.raises(InvalidKeyError):
        QtSharedImage("")
    with pytest.raises(InvalidKeyError):
        QtSharedImage("a/b", backend="posix")
    with pytest.raises(TypeError):
        QtSharedImage(b"k")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        QtSharedImage("k", timeout=-1)


def test_bad_images_are_refused_before_anything_is_created(tmp_path: Path) -> None:
    not_an_image = tmp_path / "x.png"
    not_an_image.write_bytes(b"hello")
    shared = QtSharedImage("shmimageqt" + uuid.uuid4().hex[:16], backend="posix")
    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                np.zeros((0, 4, 4), np.uint8), not_an_image, object()):
        with pytest.raises(InvalidImageError):
            shared.publish(bad)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        shared.publish(tmp_path / "missing.png")
    assert not shared.is_attached
    assert not shared.detach()


def test_decoding_needs_no_segment() -> None:
    pixels = _gradient(9, 4, 11)
    data = encode_qimage_stream(pixels)
    assert data[:8] == b"\x00\x00\x00\x01" + PNG[:4]
    np.testing.assert_array_equal(decode_qimage_stream(data + bytes(50)), pixels)
    with pytest.raises(NoFrameError):
        decode_qimage_stream(b"")
    with pytest.raises(InvalidImageError):
        decode_qimage_stream(data[:-30])  # truncated in the middle of the PNG
