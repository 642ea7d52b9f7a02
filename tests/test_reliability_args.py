"""Bad keys and arguments across the public API: each gives a typed exception.

"Typed" means a shmimage error, or the TypeError / ValueError Python's own
APIs give for a wrong type or value; never a crash, an OverflowError from
the C conversion layer, or a side effect on somebody else's segment.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

import numpy as np
import pytest
from shmimage import (
    InvalidKeyError,
    InvalidSizeError,
    LockError,
    NotFoundError,
    OutOfResourcesError,
    SharedImage,
    SharedMemory,
    SharedMemoryError,
)

TYPED = (SharedMemoryError, TypeError, ValueError)
BAD_KEY_TYPES = [b"bytes", 5, 1.5, object(), ["k"]]
BAD_NATIVE_KEYS = ["", "/", "noslash", "/a/b", "/a\0b", "/" + "x" * 300, "/\0"]


def raises_typed(call: Callable[[], Any], *expected: type) -> BaseException:
    with pytest.raises(BaseException) as info:
        call()
    exc = info.value
    assert isinstance(exc, expected or TYPED), f"{type(exc).__name__}: {exc}"
    return exc


@pytest.mark.parametrize("key", BAD_KEY_TYPES, ids=repr)
def test_key_of_the_wrong_type(key: Any) -> None:
    raises_typed(lambda: SharedMemory(key), TypeError)
    raises_typed(lambda: SharedMemory(native_key=key), TypeError)
    raises_typed(lambda: SharedImage(key), TypeError)
    raises_typed(lambda: SharedMemory.remove(key), TypeError)


@pytest.mark.parametrize("name", BAD_NATIVE_KEYS, ids=repr)
def test_bad_native_keys(name: str) -> None:
    shm = SharedMemory(native_key=name)
    raises_typed(lambda: shm.create(64), InvalidKeyError)
    raises_typed(lambda: shm.attach(), InvalidKeyError)
    assert not shm.is_attached


@pytest.mark.parametrize("key", ["", "\udc80", "a\udfffb"], ids=repr)
def test_empty_or_unencodable_user_keys(key: str) -> None:
    raises_typed(lambda: SharedMemory(key).create(64), InvalidKeyError)
    raises_typed(lambda: SharedImage(key).publish(np.zeros((2, 2), np.uint8)), InvalidKeyError)


def test_nul_in_a_user_key_is_its_own_key(unique_key) -> None:
    """A NUL inside a key is either refused or names a segment of its own."""
    base = unique_key()
    try:
        native = SharedMemory(base + "\0tail").native_key
    except InvalidKeyError:
        return
    assert native != SharedMemory(base).native_key and "\0" not in native


@pytest.mark.parametrize("size", [0, -1, -(2**70)])
def test_sizes_that_are_not_positive(unique_key, size: int) -> None:
    shm = SharedMemory(unique_key())
    raises_typed(lambda: shm.create(size), InvalidSizeError)


@pytest.mark.parametrize("size", [1.5, "64", None, True, b"64"], ids=repr)
def test_sizes_of_the_wrong_type(unique_key, size: Any) -> None:
    raises_typed(lambda: SharedMemory(unique_key()).create(size), TypeError)


@pytest.mark.parametrize("size", [2**62, 2**63])
def test_huge_sizes_are_out_of_resources(unique_key, size: int) -> None:
    shm = SharedMemory(unique_key())
    raises_typed(lambda: shm.create(size), OutOfResourcesError)
    assert not os.path.exists("/dev/shm" + shm.native_key)


@pytest.mark.parametrize("call", ["create", "capacity"])
def test_sizes_beyond_64_bits(unique_key, call: str) -> None:
    key = unique_key()
    if call == "create":
        raises_typed(lambda: SharedMemory(key).create(2**64), SharedMemoryError)
    else:
        image = SharedImage(key, capacity=2**64)
        raises_typed(lambda: image.publish(np.zeros((2, 2), np.uint8)), SharedMemoryError)


@pytest.mark.parametrize("capacity", [0, -5, 1.5, "big"], ids=repr)
def test_bad_capacities(capacity: Any) -> None:
    raises_typed(lambda: SharedImage("k", capacity=capacity), ValueError, TypeError)


@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan"), "soon", object()], ids=repr)
def test_bad_timeouts(unique_key, timeout: Any) -> None:
    key = unique_key()
    with SharedMemory(key) as shm, SharedImage(key + "-img") as image:
        shm.create(64)
        image.publish(np.zeros((2, 2), np.uint8))
        raises_typed(lambda: shm.lock(timeout), ValueError, TypeError)
        assert shm.lock(0)  # the failed call left the lock usable
        shm.unlock()
        raises_typed(lambda: image.wait(timeout), ValueError, TypeError)
        raises_typed(lambda: image.publish(np.zeros((2, 2), np.uint8), timeout), ValueError,
                     TypeError)
        assert image.publish(np.ones((2, 2), np.uint8), timeout=1.0) == 2


@pytest.mark.parametrize("after", ["x", None])
def test_bad_wait_after(unique_key, after: Any) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(np.zeros((2, 2), np.uint8))
        if after is None:
            with pytest.raises(TimeoutError):
                image.wait(0.01, after)
        else:
            raises_typed(lambda: image.wait(0.01, after), TypeError, ValueError)


@pytest.mark.parametrize("mode", [5, -1, "rw", None], ids=repr)
def test_bad_access_modes(unique_key, mode: Any) -> None:
    key = unique_key()
    raises_typed(lambda: SharedMemory(key).create(64, mode), ValueError)
    with contextlib.suppress(NotFoundError):
        SharedMemory.remove(key)
    with SharedMemory(key) as shm:
        shm.create(64)
        raises_typed(lambda: SharedMemory(key).attach(mode), ValueError)


def test_bad_access_mode_creates_nothing(unique_key) -> None:
    shm = SharedMemory(unique_key())
    raises_typed(lambda: shm.create(64, 5), ValueError)
    exists = os.path.exists("/dev/shm" + shm.native_key)
    if exists:
        SharedMemory.remove(shm.key)
    assert not exists


@pytest.mark.parametrize("shape", [(-1, 4), (0, 4), (2,), (2, 2, 2, 2, 2), ("a", "b"), (2.0, 2),
                                   (3, 480, 640)],
                         ids=repr)
def test_bad_loan_shapes_leave_the_lock_free(unique_key, shape: Any) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(np.zeros((2, 2), np.uint8))
        with pytest.raises(TYPED), image.loan(shape):
            pass
        assert image.publish(np.ones((2, 2), np.uint8), timeout=1.0) == 2


def test_overflowing_loan_shape_leaves_the_lock_free(unique_key) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(np.zeros((2, 2), np.uint8))
        with pytest.raises(TYPED), image.loan((2**40, 2**40)):
            pass
        assert image.publish(np.ones((2, 2), np.uint8), timeout=1.0) == 2


@pytest.mark.parametrize("name", ["", "/", "/a/b"], ids=repr)
def test_remove_with_bad_names(name: str) -> None:
    raises_typed(lambda: SharedMemory.remove(name), InvalidKeyError, NotFoundError)


def test_remove_with_a_nul_removes_nothing_else(unique_key) -> None:
    """remove('/name\\0junk') once removed '/name' (the C layer stopped at the NUL)."""
    name = unique_key.native()
    with SharedMemory(native_key=name) as shm:
        shm.create(64)
        raises_typed(lambda: SharedMemory.remove(name + "\0junk"), InvalidKeyError,
                     NotFoundError)
        assert os.path.exists("/dev/shm" + name)


def test_unlock_and_detach_misuse(unique_key) -> None:
    shm = SharedMemory(unique_key())
    raises_typed(shm.unlock, LockError)
    raises_typed(lambda: shm.lock(1), LockError)
    assert shm.detach() is False
    shm.create(64)
    raises_typed(shm.unlock, LockError)
    assert shm.lock(1)
    raises_typed(lambda: shm.lock(0), LockError)  # not recursive
    shm.unlock()
    assert shm.detach() is True
    raises_typed(lambda: shm.data, SharedMemoryError)
