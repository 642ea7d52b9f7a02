"""4-D frames (N, H, W, C): batches round-trip exactly.

These need the frame layout that stores four dimensions; with a layout
that keeps three, publishing a batch works but reading it back fails.
"""
from __future__ import annotations

import numpy as np
import pytest
from shmimage import SharedImage

BATCHES = [((2, 5, 7, 3), np.uint8), ((8, 4, 4, 1), np.float32), ((3, 6, 5, 2), np.int16),
           ((1, 9, 8, 4), np.uint16), ((4, 3, 3, 7), np.float64), ((2, 4, 6, 1), np.bool_)]


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key("batch")) as img:
        yield img


def batch(shape: tuple, dtype: type) -> np.ndarray:
    values = np.arange(int(np.prod(shape))) * 7919 % 1021
    return (values % 2 if np.dtype(dtype).kind == "b" else values).astype(dtype).reshape(shape)


@pytest.mark.parametrize("shape, dtype", BATCHES,
                         ids=[f"{'x'.join(map(str, s))}-{np.dtype(d).name}" for s, d in BATCHES])
def test_batches_round_trip_exactly(image, shape, dtype) -> None:
    frames = batch(shape, dtype)
    image.publish(frames)
    out = image.read()
    assert out.shape == shape and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, frames)
    info = image.info()
    assert info.shape == shape
    assert (info.height, info.width, info.channels) == shape[1:]
    with image.view() as view:
        np.testing.assert_array_equal(view, frames)


def test_a_batch_can_be_loaned(image) -> None:
    with image.loan((4, 8, 8, 3), np.uint8) as frames:
        frames[...] = np.arange(4, dtype=np.uint8)[:, None, None, None]
    out = image.read()
    assert out.shape == (4, 8, 8, 3)
    assert [int(out[i].max()) for i in range(4)] == [0, 1, 2, 3]


def test_fortran_and_byte_swapped_batches(image) -> None:
    frames = batch((3, 5, 6, 2), np.int32)
    image.publish(np.asfortranarray(frames).astype(">i4"))
    out = image.read()
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, frames)
