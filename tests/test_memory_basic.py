"""SharedMemory in one process: keys, create/attach/detach, errors, data."""
from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shmimage import (
    AccessMode,
    AlreadyExistsError,
    ErrorCode,
    InvalidKeyError,
    InvalidSizeError,
    LockError,
    NotAttachedError,
    NotFoundError,
    SharedMemory,
    SharedMemoryError,
)
from workers_memory import has_pattern, pattern, shm_path, write_pattern

# --- construction and keys -----------------------------------------------------


def test_constructor_defaults() -> None:
    shm = SharedMemory()
    assert shm.key is None
    assert not shm.is_attached
    assert shm.size == 0
    assert shm.error == ErrorCode.NO_ERROR
    assert shm.error_string == ""
    assert shm.detach() is False
    with pytest.raises(NotAttachedError):
        shm.data  # noqa: B018


def test_key_is_kept_and_not_attached(unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    assert shm.key == key
    assert not shm.is_attached
    assert shm.size == 0
    assert shm.error == ErrorCode.NO_ERROR
    assert shm.detach() is False


@pytest.mark.parametrize(
    "key", ["one", "QSharedMemoryExample", "Noël", "日本語のキー", "o/e", "|x", "a" * 1000],
    ids=["one", "example", "noel", "japanese", "slash", "pipe", "long"],
)
def test_native_key_shape(key: str) -> None:
    native = SharedMemory(key).native_key
    assert native.startswith("/")
    assert len(native) <= 30
    assert "/" not in native[1:]
    assert "\0" not in native
    assert native == SharedMemory(key).native_key


@pytest.mark.parametrize(
    "key1, key2",
    [("Noël", "Nol"), ("key", "key1"), ("ke1y", "key1"), ("key1", "key2"),
     ("a" * 1000, "a" * 999 + "b"), ("Key", "key")],
)
def test_distinct_keys_give_distinct_native_keys(key1: str, key2: str) -> None:
    assert SharedMemory(key1).native_key != SharedMemory(key2).native_key


def test_native_key_is_used_as_is() -> None:
    shm = SharedMemory(native_key="/shmi-raw-name")
    assert shm.native_key == "/shmi-raw-name"
    assert shm.key is None
    assert not shm.is_attached


@pytest.mark.parametrize(
    "label", ["Noël-日本-", "x" * 2000, "o/e|x\\ "], ids=["non-ascii", "long", "punctuation"]
)
def test_unusual_keys_work_end_to_end(unique_key, label: str) -> None:
    key = unique_key(label)
    with SharedMemory(key) as owner:
        owner.create(64)
        write_pattern(owner, 3)
        with SharedMemory(key) as other:
            other.attach()
            assert has_pattern(other, 3)


def test_native_key_segment_round_trip(unique_key) -> None:
    name = unique_key.native()
    with SharedMemory(native_key=name) as owner:
        owner.create(100)
        assert os.path.exists(shm_path(name))
        with SharedMemory(native_key=name) as other:
            other.attach()
            assert other.size == 100
    assert not os.path.exists(shm_path(name))


# --- create --------------------------------------------------------------------


def test_create_without_key() -> None:
    shm = SharedMemory()
    with pytest.raises(InvalidKeyError) as info:
        shm.create(1024)
    assert isinstance(info.value, ValueError)
    assert info.value.code == ErrorCode.KEY_ERROR
    assert shm.error == ErrorCode.KEY_ERROR
    assert shm.error_string != ""
    assert not shm.is_attached


def test_create_with_empty_key() -> None:
    with pytest.raises(InvalidKeyError):
        SharedMemory("").create(1024)


@pytest.mark.parametrize("name", ["no-leading-slash", "/two/slashes", "/", "/" + "n" * 300])
def test_create_with_bad_native_key(name: str) -> None:
    shm = SharedMemory(native_key=name)
    with pytest.raises(InvalidKeyError):
        shm.create(64)
    assert not shm.is_attached
    if name != "/":
        assert not os.path.exists(shm_path(name))


@pytest.mark.parametrize("size", [0, -1, -4096])
def test_create_with_bad_size(unique_key, size: int) -> None:
    shm = SharedMemory(unique_key())
    with pytest.raises(InvalidSizeError) as info:
        shm.create(size)
    assert isinstance(info.value, ValueError)
    assert info.value.code == ErrorCode.INVALID_SIZE
    assert shm.error == ErrorCode.INVALID_SIZE
    assert shm.error_string != ""
    assert not shm.is_attached
    assert shm.size == 0
    with pytest.raises(NotAttachedError):
        shm.data  # noqa: B018


@pytest.mark.parametrize("size", ["1024", 10.5, None])
def test_create_with_size_of_wrong_type(unique_key, size: object) -> None:
    with pytest.raises(TypeError):
        SharedMemory(unique_key()).create(size)  # type: ignore[arg-type]


def test_create_when_already_exists(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as first:
        first.create(1024)
        second = SharedMemory(key)
        with pytest.raises(AlreadyExistsError) as info:
            second.create(1024)
        assert isinstance(info.value, FileExistsError)
        assert isinstance(info.value, SharedMemoryError)
        assert info.value.code == ErrorCode.ALREADY_EXISTS
        assert second.error == ErrorCode.ALREADY_EXISTS
        assert second.error_string != ""
        assert not second.is_attached
        assert first.is_attached


def test_create_twice_on_one_object(unique_key) -> None:
    with SharedMemory(unique_key()) as shm:
        shm.create(64)
        with pytest.raises(SharedMemoryError):
            shm.create(64)
        assert shm.is_attached and shm.size == 64


@pytest.mark.parametrize("size", [1, 100, 1000, 4095, 4096, 4097, 1 << 20])
def test_create_gives_exact_size_zeroed(unique_key, size: int) -> None:
    with SharedMemory(unique_key()) as shm:
        shm.create(size)
        assert shm.is_attached
        assert shm.size == size
        assert shm.error == ErrorCode.NO_ERROR
        assert shm.error_string == ""
        with shm.data as mv:
            assert isinstance(mv, memoryview)
            assert len(mv) == size and mv.nbytes == size
            assert mv.format == "B" and mv.ndim == 1
            assert not mv.readonly
            assert bytes(mv) == bytes(size)


def test_create_read_only_is_zeroed_and_read_only(unique_key) -> None:
    with SharedMemory(unique_key()) as shm:
        shm.create(1024, AccessMode.READ_ONLY)
        with shm.data as mv:
            assert mv.readonly
            assert bytes(mv) == bytes(1024)
        with pytest.raises(LockError):
            shm.lock()


def test_file_mode_is_0600_whatever_the_umask(unique_key) -> None:
    old = os.umask(0)
    try:
        with SharedMemory(unique_key()) as shm:
            shm.create(64)
            mode = os.stat(shm_path(shm.native_key)).st_mode
            assert stat.S_IMODE(mode) == 0o600
    finally:
        os.umask(old)


def test_error_resets_after_success(unique_key) -> None:
    shm = SharedMemory(unique_key())
    with pytest.raises(NotFoundError):
        shm.attach()
    assert shm.error == ErrorCode.NOT_FOUND
    shm.create(16)
    assert shm.error == ErrorCode.NO_ERROR
    assert shm.error_string == ""
    assert shm.detach()


# --- attach / detach -------------------------------------------------------------


def test_attach_without_key() -> None:
    shm = SharedMemory()
    with pytest.raises(InvalidKeyError):
        shm.attach()
    assert shm.error == ErrorCode.KEY_ERROR
    assert not shm.is_attached


def test_attach_before_create(unique_key) -> None:
    shm = SharedMemory(unique_key())
    with pytest.raises(NotFoundError) as info:
        shm.attach()
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.code == ErrorCode.NOT_FOUND
    assert shm.error == ErrorCode.NOT_FOUND
    assert shm.error_string != ""
    assert not shm.is_attached
    assert shm.size == 0
    assert shm.detach() is False


def test_attach_existing_detach_and_reattach(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as owner:
        owner.create(1024)
        shm = SharedMemory(key)
        shm.attach()
        assert shm.is_attached and shm.size == 1024
        assert shm.error == ErrorCode.NO_ERROR
        assert shm.detach() is True
        assert not shm.is_attached and shm.size == 0
        shm.attach()
        assert shm.size == 1024
        assert shm.detach() is True
        assert shm.detach() is False
        with pytest.raises(NotAttachedError):
            shm.data  # noqa: B018


def test_attach_twice_on_one_object(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as owner:
        owner.create(64)
        with pytest.raises(SharedMemoryError):
            owner.attach()
        assert owner.is_attached


def test_two_mappings_see_each_other(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as producer, SharedMemory(key) as consumer:
        producer.create(512)
        consumer.attach()
        with producer.data as put, consumer.data as get:
            for i in range(0, 512, 7):
                put[i] = ord("Q")
                assert get[i] == ord("Q")
            get[1] = 42
            assert put[1] == 42


def test_read_only_attach(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as owner, SharedMemory(key) as reader:
        owner.create(256)
        write_pattern(owner, 5)
        reader.attach(AccessMode.READ_ONLY)
        with reader.data as mv:
            assert mv.readonly
            assert bytes(mv) == pattern(5, 256)
            with pytest.raises(TypeError):
                mv[0] = 1
            with pytest.raises(TypeError):
                mv[:4] = b"abcd"
        with pytest.raises(LockError):
            reader.lock()
        write_pattern(owner, 6)
        assert has_pattern(reader, 6)


def test_detach_refuses_while_a_view_is_alive(unique_key) -> None:
    with SharedMemory(unique_key()) as shm:
        shm.create(64)
        mv = shm.data
        part = mv[8:16]
        with pytest.raises(BufferError):
            shm.detach()
        assert shm.is_attached
        part[0] = 7
        assert mv[8] == 7
        part.release()
        mv.release()
        assert shm.detach() is True
        assert not shm.is_attached


def test_detach_refuses_while_a_derived_buffer_is_alive(unique_key) -> None:
    numpy = pytest.importorskip("numpy")
    with SharedMemory(unique_key()) as shm:
        shm.create(64)
        arr = numpy.frombuffer(shm.data, dtype=numpy.uint8)
        with pytest.raises(BufferError):
            shm.detach()
        arr[:] = 9
        del arr
        assert shm.detach() is True


def test_context_manager_detaches(unique_key) -> None:
    key = unique_key()
    with SharedMemory(key) as shm:
        assert isinstance(shm, SharedMemory)
        shm.create(64)
        path = shm_path(shm.native_key)
        assert os.path.exists(path)
    assert not shm.is_attached
    assert not os.path.exists(path)
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()


def test_context_manager_detaches_on_exception(unique_key) -> None:
    with pytest.raises(RuntimeError), SharedMemory(unique_key()) as shm:
        shm.create(64)
        raise RuntimeError("boom")
    assert not shm.is_attached


def test_dropping_the_object_detaches(unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(64)
    path = shm_path(shm.native_key)
    del shm
    assert not os.path.exists(path)


def test_last_detach_removes_the_segment(unique_key) -> None:
    key = unique_key()
    first, second = SharedMemory(key), SharedMemory(key)
    first.create(64)
    second.attach()
    path = shm_path(first.native_key)
    assert first.detach()
    assert os.path.exists(path)
    write_pattern(second, 1)
    assert second.detach()
    assert not os.path.exists(path)
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()


def test_create_again_after_last_detach(unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(512)
    write_pattern(shm, 2)
    assert shm.detach()
    shm.create(256)
    assert shm.size == 256
    with shm.data as mv:
        assert bytes(mv) == bytes(256)
    assert shm.detach()


# --- lock/data before create or attach -------------------------------------------


def test_lock_and_unlock_need_an_attached_segment(unique_key) -> None:
    for shm in (SharedMemory(), SharedMemory(unique_key())):
        with pytest.raises((NotAttachedError, LockError)):
            shm.lock()
        with pytest.raises((NotAttachedError, LockError)):
            shm.unlock()
        with pytest.raises((NotAttachedError, LockError)), shm.locked():
            pass
        with pytest.raises(NotAttachedError):
            shm.data  # noqa: B018


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_native_key_properties_hold_for_any_keys(key1: str, key2: str) -> None:
    native1, native2 = SharedMemory(key1).native_key, SharedMemory(key2).native_key
    for native in (native1, native2):
        assert native.startswith("/") and len(native) <= 30
        assert "/" not in native[1:] and "\0" not in native
    assert (native1 == native2) == (key1 == key2)


def test_key_that_cannot_be_encoded() -> None:
    with pytest.raises(InvalidKeyError):
        SharedMemory("lone surrogate \ud800").create(64)


@pytest.mark.parametrize("key", [123, b"bytes-key", 1.5])
def test_key_of_wrong_type(key: object) -> None:
    with pytest.raises(TypeError):
        SharedMemory(key)  # type: ignore[arg-type]


# --- changing keys (QSharedMemory's setKey / setNativeKey) -------------------------


def test_set_key_and_set_native_key() -> None:
    shm = SharedMemory("one")
    first_native = shm.native_key
    shm.set_key("two")
    assert shm.key == "two"
    assert shm.native_key == SharedMemory("two").native_key != first_native
    shm.set_native_key("/shmi-raw-three")
    assert shm.key is None
    assert shm.native_key == "/shmi-raw-three"
    shm.set_key(None)
    assert shm.key is None and shm.native_key is None
    assert not shm.is_attached and shm.size == 0
    assert shm.error == ErrorCode.NO_ERROR
    assert shm.detach() is False


def test_set_key_detaches_first(unique_key) -> None:
    key = unique_key()
    shm = SharedMemory(key)
    shm.create(64)
    path = shm_path(shm.native_key)
    shm.set_key(unique_key())
    assert not shm.is_attached
    assert not os.path.exists(path)


def test_keys_that_look_like_native_names(unique_key) -> None:
    key = unique_key(prefix="/")
    with SharedMemory(key) as owner:
        owner.create(64, persistent=True)
        with SharedMemory(key) as other:
            other.attach()
    SharedMemory.remove(key)
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))


def test_read_only_attacher_can_be_the_last_to_leave(unique_key) -> None:
    key = unique_key()
    owner, reader = SharedMemory(key), SharedMemory(key)
    owner.create(64)
    path = shm_path(owner.native_key)
    reader.attach(AccessMode.READ_ONLY)
    assert owner.detach()
    assert os.path.exists(path)
    assert reader.detach()
    assert not os.path.exists(path)


# --- no leaks of descriptors or mappings -------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_descriptor_or_mapping_leaks(unique_key) -> None:
    key = unique_key()
    for _ in range(3):  # warm up whatever is allocated once
        with SharedMemory(key) as shm:
            shm.create(4096)
    fds, maps = _open_fds(), _mappings()
    for i in range(300):
        with SharedMemory(key) as shm, SharedMemory(key) as other:
            shm.create(4096 + i)
            other.attach()
            assert other.lock(timeout=0)
            other.unlock()
        with pytest.raises(NotFoundError):
            SharedMemory(key).attach()
    assert _open_fds() == fds
    assert _mappings() == maps


def test_many_objects_on_one_segment(unique_key) -> None:
    key = unique_key()
    owner = SharedMemory(key)
    owner.create(64)
    path = shm_path(owner.native_key)
    others = [SharedMemory(key) for _ in range(200)]
    for shm in others:
        shm.attach()
    assert owner.detach()
    for shm in others[:-1]:
        assert shm.detach()
        assert os.path.exists(path)
    assert others[-1].detach()
    assert not os.path.exists(path)


def test_read_only_data_stays_read_only_through_numpy(unique_key) -> None:
    numpy = pytest.importorskip("numpy")
    key = unique_key()
    with SharedMemory(key) as owner, SharedMemory(key) as reader:
        owner.create(64)
        reader.attach(AccessMode.READ_ONLY)
        arr = numpy.frombuffer(reader.data, dtype=numpy.uint8)
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1
        with pytest.raises(ValueError):
            arr.setflags(write=True)
        del arr
