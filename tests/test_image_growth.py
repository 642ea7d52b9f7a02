"""publish() reuses the segment while frames fit and grows it, under the same name, when not."""
from __future__ import annotations

import os

import numpy as np
import pytest
from shmimage import NoFrameError, SharedImage
from workers_image import frame_generation, gen_frame, shm_path

SMALL, BIG = (48, 64), (1080, 1920, 4)


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


def inode(image: SharedImage) -> int:
    return os.stat(shm_path(image.native_key)).st_ino


def temporary_names() -> list:
    """Names this process may have used while building a segment."""
    return [e for e in os.listdir("/dev/shm") if str(os.getpid()) in e]


def test_frames_that_fit_reuse_the_segment(image: SharedImage) -> None:
    image.publish(gen_frame((100, 100, 4), 1))
    first = inode(image)
    for generation, shape in enumerate([(100, 100, 4), (50, 50), (10, 400, 3), (1, 1)], 2):
        image.publish(gen_frame(shape, generation))
        assert inode(image) == first
        assert image.read().shape == shape


def test_growth_keeps_the_name_and_the_generations(image: SharedImage) -> None:
    image.publish(gen_frame(SMALL, 1))
    before = inode(image)
    assert image.publish(gen_frame(BIG, 2)) == 2
    assert inode(image) != before  # a larger segment was swapped in ...
    assert os.path.exists(shm_path(image.native_key))  # ... under the same name
    assert not temporary_names()
    out = image.read()
    assert out.shape == BIG and (out == 2).all()
    assert image.publish(gen_frame(SMALL, 3)) == 3  # and smaller frames fit in it
    assert image.info().generation == 3


def test_capacity_presizes_the_slots(unique_key) -> None:
    with SharedImage(unique_key(), capacity=int(np.prod(BIG)) * 4) as image:
        image.publish(gen_frame(SMALL, 1))
        first = inode(image)
        image.publish(gen_frame(BIG, 2))
        assert inode(image) == first


def test_attached_readers_follow_growth(image: SharedImage) -> None:
    image.publish(gen_frame(SMALL, 1))
    readers = [SharedImage(image.key) for _ in range(3)]
    try:
        for reader in readers:
            assert reader.info().shape == SMALL
        image.publish(gen_frame(BIG, 2))
        assert readers[0].read().shape == BIG
        with readers[1].view() as view:
            assert view.shape == BIG and view[0, 0, 0] == 2
        assert readers[2].info().shape == BIG
        assert readers[2].wait(timeout=1, after=1) == 2
    finally:
        for reader in readers:
            reader.detach()


def test_repeated_growth(image: SharedImage) -> None:
    with SharedImage(image.key) as reader:
        for generation, side in enumerate([8, 64, 256, 1024, 2048], 1):
            image.publish(gen_frame((side, side), generation))
            out = reader.read()
            assert out.shape == (side, side) and (out == generation).all()


def test_readers_keep_the_previous_frame_while_the_store_grows(image: SharedImage) -> None:
    image.publish(gen_frame(SMALL, 1))
    with SharedImage(image.key) as reader:
        before = reader.info()
        with image.loan(BIG, np.float32) as frame:  # the grown store is already named
            frame.fill(2)
            try:
                seen = (reader.info(), frame_generation(reader.read()))
            except NoFrameError as exc:
                seen = exc
        del frame  # a failing assert must not keep the loaned mapping alive
        assert seen == (before, 1)  # the same frame, facts and all
        assert reader.info().generation == 2
        assert frame_generation(reader.read()) == 2


def test_a_reader_keeps_the_image_when_the_grower_detaches(image: SharedImage) -> None:
    image.publish(gen_frame(SMALL, 1))
    grower = SharedImage(image.key)
    grower.publish(gen_frame(BIG, 2))
    grower.detach()
    assert frame_generation(image.read()) == 2
