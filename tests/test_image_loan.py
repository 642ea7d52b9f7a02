"""loan(): fill a frame in place in the segment; leaving the block publishes it."""
from __future__ import annotations

import gc
import os
import threading

import numpy as np
import pytest
from shmimage import LockError, SharedImage
from workers_image import WAIT, shm_path


class Boom(Exception):
    pass


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 1), (48, 64, 3), (48, 64, 4)])
def test_loan_publishes_in_place(image: SharedImage, shape: tuple, dtype) -> None:
    expected = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    with image.loan(shape, dtype) as frame:
        assert frame.shape == shape and frame.dtype == dtype
        assert frame.flags.writeable and not frame.flags.owndata
        frame[...] = expected
    info = image.info()
    assert (info.shape, info.dtype, info.generation) == (shape, np.dtype(dtype), 1)
    np.testing.assert_array_equal(image.read(), expected)


def test_the_loaned_memory_is_the_frame_readers_view(image: SharedImage) -> None:
    with image.loan((32, 32, 4)) as frame:
        frame[...] = 5
        loaned = frame
    with image.view() as view:
        assert np.shares_memory(loaned, view)  # no copy between loan and view
        assert (view == 5).all()


def test_loan_generation_follows_publish(image: SharedImage) -> None:
    image.publish(np.zeros((4, 4), np.uint8))
    with image.loan((4, 4)) as frame:
        frame[...] = 1
    assert image.publish(np.zeros((4, 4), np.uint8)) == 3
    assert image.info().generation == 3


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt, GeneratorExit])
def test_an_exception_inside_the_block_publishes_nothing(image: SharedImage, error) -> None:
    previous = np.full((16, 16, 3), 7, np.uint8)
    image.publish(previous)
    with pytest.raises(error), image.loan((16, 16, 3)) as frame:
        frame[...] = 99
        raise error
    assert image.info().generation == 1
    np.testing.assert_array_equal(image.read(), previous)
    with image.view() as view:
        np.testing.assert_array_equal(view, previous)
    with image.loan((16, 16, 3)) as frame:
        frame[...] = 8
    assert image.info().generation == 2  # no generation was used up by the failed loan
    assert (image.read() == 8).all()


def test_repeated_failed_loans_never_use_up_slots(image: SharedImage) -> None:
    image.publish(np.zeros((8, 8), np.uint8))
    for _ in range(20):
        with pytest.raises(Boom), image.loan((8, 8)):
            raise Boom
    assert image.publish(np.ones((8, 8), np.uint8), timeout=5) == 2


def test_readers_see_the_previous_frame_while_a_loan_is_open(image: SharedImage) -> None:
    image.publish(np.full((10, 10), 1, np.uint8))
    with SharedImage(image.key) as reader, image.loan((10, 10)) as frame:
        frame[...] = 2
        assert (reader.read() == 1).all()
        assert (image.read() == 1).all()
        assert reader.info().generation == 1
    assert (reader.read() == 2).all()


def test_first_loan_creates_the_segment(image: SharedImage) -> None:
    assert not os.path.exists(shm_path(image.native_key))
    with image.loan((20, 30, 4), np.uint16) as frame:
        frame[...] = 1000
    assert os.path.exists(shm_path(image.native_key))
    with SharedImage(image.key) as other:
        assert (other.read() == 1000).all()


def test_loan_grows_the_segment(image: SharedImage) -> None:
    image.publish(np.zeros((8, 8), np.uint8))
    with SharedImage(image.key) as reader:
        assert reader.read().shape == (8, 8)
        with image.loan((600, 800, 4), np.float32) as frame:
            frame[...] = 0.5
        out = reader.read()
        assert out.shape == (600, 800, 4) and (out == 0.5).all()
        assert reader.info().generation == 2


def test_detach_with_a_loaned_array_kept(unique_key) -> None:
    image = SharedImage(unique_key())
    with image.loan((64, 64)) as frame:
        frame[...] = 3
        kept = frame
    assert image.detach() is True
    assert kept.sum() == 3 * 64 * 64  # the mapping is still there
    with pytest.raises(ValueError):
        kept[0, 0] = 4  # read-only after its block
    assert os.path.exists(shm_path(image.native_key))
    del kept, frame
    gc.collect()
    assert not os.path.exists(shm_path(image.native_key))


def test_publishing_inside_ones_own_loan_is_a_lock_error(image: SharedImage) -> None:
    image.publish(np.zeros((4, 4), np.uint8))
    with SharedImage(image.key) as other, image.loan((4, 4)) as frame:
        for writer in (image, other):  # never a self-deadlock
            with pytest.raises(LockError):
                writer.publish(np.ones((4, 4), np.uint8), timeout=WAIT)
        frame[...] = 3
    assert image.info().generation == 2
    assert (image.read() == 3).all()


def test_a_loan_from_another_thread_waits_for_the_lock(image: SharedImage) -> None:
    image.publish(np.zeros((4, 4), np.uint8))
    done: list = []

    def publish_from_thread() -> None:
        with SharedImage(image.key) as other:
            done.append(other.publish(np.full((4, 4), 5, np.uint8), timeout=WAIT))

    with image.loan((4, 4)) as frame:
        thread = threading.Thread(target=publish_from_thread)
        thread.start()
        frame[...] = 4
    thread.join(WAIT)
    assert not thread.is_alive() and done == [3]
    assert (image.read() == 5).all()


def test_loans_that_change_shape_and_dtype_get_arrays_of_their_own(image: SharedImage) -> None:
    """Arrays over a slot are reused only for the same shape and dtype."""
    asks = [((8, 8), np.uint8), ([8, 8], np.uint16), ((8, 8), np.uint8), ((4, 16, 3), "uint8"),
            ((8, 8), np.float32), ((4, 16, 3), np.uint8)] * 2
    for n, (shape, dtype) in enumerate(asks, start=1):
        with image.loan(shape, dtype) as frame:
            assert frame.shape == tuple(shape) and frame.dtype == np.dtype(dtype)
            frame[...] = n
        got = image.read()
        assert got.shape == tuple(shape) and got.dtype == np.dtype(dtype)
        assert np.all(got == n)


def test_a_loan_block_cannot_be_entered_twice(image: SharedImage) -> None:
    block = image.loan((8, 8))
    with block as frame:
        frame[...] = 1
        with pytest.raises(RuntimeError, match="already open"):
            block.__enter__()
    assert image.info().generation == 1
    with block as frame:  # closed again: it may be used once more
        frame[...] = 2
    assert np.all(image.read() == 2)
