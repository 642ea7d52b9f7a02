"""SharedImage and SharedMemory pickle by key and options; FrameInfo as a value.

Through a real spawn pool: the receiving processes attach on first use.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle

import numpy as np
import pytest
import workers_pickle
from shmimage import FrameInfo, SharedImage, SharedMemory

TIMEOUT = 60


@pytest.fixture
def pool():
    ctx = multiprocessing.get_context("spawn")
    workers = ctx.Pool(2)
    try:
        yield workers
    finally:
        workers.terminate()
        workers.join()


def test_a_shared_image_pickles_as_key_and_options(unique_key) -> None:
    key = unique_key("pickle")
    image = SharedImage(key, capacity=1 << 16, persistent=False)
    data = pickle.dumps(image)
    assert len(data) < 400  # key and options, no pixels or handles
    copy = pickle.loads(data)
    assert isinstance(copy, SharedImage) and copy is not image
    assert (copy.key, copy.native_key, copy.capacity, copy.persistent) == (
        key, image.native_key, 1 << 16, False)
    assert not copy.is_attached


def test_a_shared_image_pickles_while_attached_and_the_copy_reads(unique_key) -> None:
    key = unique_key("pickle-attached")
    with SharedImage(key) as image:
        image.publish(np.arange(12, dtype=np.uint16).reshape(3, 4))
        copy = pickle.loads(pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL))
        with copy:
            np.testing.assert_array_equal(copy.read(), image.read())


def test_through_a_spawn_pool(unique_key, pool) -> None:
    key = unique_key("pool")
    frame = np.arange(48, dtype=np.int32).reshape(4, 4, 3) - 7
    with SharedImage(key) as image:
        image.publish(frame)
        results = pool.map_async(workers_pickle.read_and_sum, [image] * 4).get(TIMEOUT)
        for pid, got_key, attached_before, total in results:
            assert pid != os.getpid()
            assert got_key == key and attached_before is False
            assert total == int(frame.sum())
        generations = pool.starmap_async(
            workers_pickle.publish_row, [(image, row) for row in range(3)]).get(TIMEOUT)
        assert sorted(generations) == [2, 3, 4]
        out = image.read()
        assert out.dtype == np.int16 and out.shape == (4, 6)
        assert out[0, 0] == generations.index(max(generations))


def test_shared_memory_pickles_by_key_or_native_key(unique_key, pool) -> None:
    key = unique_key("pickle-mem")
    memory = SharedMemory(key)
    copy = pickle.loads(pickle.dumps(memory))
    assert (copy.key, copy.native_key, copy.is_attached) == (key, memory.native_key, False)
    native = SharedMemory(native_key=unique_key.native())
    copy = pickle.loads(pickle.dumps(native))
    assert (copy.key, copy.native_key) == (None, native.native_key)
    assert pool.apply_async(workers_pickle.memory_key, (memory,)).get(TIMEOUT) == (
        key, memory.native_key, False)


def test_frame_info_pickles_as_a_value(unique_key) -> None:
    with SharedImage(unique_key("pickle-info")) as image:
        image.publish(np.zeros((3, 5, 2), np.float16))
        info = image.info()
    copy = pickle.loads(pickle.dumps(info))
    assert isinstance(copy, FrameInfo) and copy == info
    assert copy.dtype == np.float16 and copy.shape == (3, 5, 2)
