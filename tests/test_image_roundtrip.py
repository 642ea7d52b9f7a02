"""SharedImage in one process: every supported shape and dtype, in and out."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from shmimage import FrameInfo, SharedImage

SHAPES = [(48, 64), (48, 64, 1), (48, 64, 3), (48, 64, 4), (1, 1), (1, 1, 4)]
DTYPES = [np.uint8, np.uint16, np.float32]


def random_frame(shape: tuple, dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip(image: SharedImage, shape: tuple, dtype: type) -> None:
    frame = random_frame(shape, dtype)
    image.publish(frame)
    out = image.read()
    assert out.shape == shape and out.dtype == dtype
    np.testing.assert_array_equal(out, frame)
    with image.view() as view:
        assert view.shape == shape and view.dtype == dtype
        np.testing.assert_array_equal(view, frame)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[::2, ::3],
        lambda a: a[::-1, ::-1],
        lambda a: a.transpose(1, 0, 2),
        lambda a: np.asfortranarray(a),
        lambda a: a[:, :, :3],
        lambda a: a[:, :, 1],
    ],
    ids=["step", "reversed", "transposed", "fortran", "channel-slice", "one-channel"],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_input(image: SharedImage, make, dtype: type) -> None:
    frame = make(random_frame((40, 30, 4), dtype, seed=3))
    assert not frame.flags.c_contiguous
    image.publish(frame)
    out = image.read()
    assert out.shape == frame.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, frame)


def test_2d_and_single_channel_3d_are_kept_apart(image: SharedImage) -> None:
    flat = random_frame((48, 64), np.uint8)
    image.publish(flat[:, :, np.newaxis])
    assert image.info().shape == (48, 64, 1)
    assert image.read().shape == (48, 64, 1)
    image.publish(flat)
    assert image.info().shape == (48, 64)
    assert image.read().shape == (48, 64)
    with image.view() as view:
        assert view.shape == (48, 64)


def test_float_specials_are_kept_bit_for_bit(image: SharedImage) -> None:
    frame = np.array([[np.nan, np.inf], [-np.inf, -0.0]], dtype=np.float32)
    image.publish(frame)
    assert image.read().tobytes() == frame.tobytes()


def test_big_endian_input_is_stored_by_value(image: SharedImage) -> None:
    frame = np.arange(12, dtype=">u2").reshape(3, 4) * 1000
    image.publish(frame)
    out = image.read()
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, frame)


def test_generation_counts_publishes(image: SharedImage) -> None:
    frame = random_frame((8, 8), np.uint8)
    assert [image.publish(frame) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert image.info().generation == 5


def test_read_is_a_private_copy(image: SharedImage) -> None:
    image.publish(np.zeros((4, 4), np.uint8))
    out = image.read()
    assert out.flags.writeable and out.flags.owndata
    out[:] = 7
    np.testing.assert_array_equal(image.read(), np.zeros((4, 4), np.uint8))


def test_view_is_read_only_and_zero_copy(image: SharedImage) -> None:
    image.publish(np.zeros((4, 4, 3), np.uint16))
    with image.view() as view:
        assert not view.flags.writeable and not view.flags.owndata
        with pytest.raises(ValueError):
            view[0, 0, 0] = 1


def test_another_object_in_this_process_sees_the_frame(image: SharedImage) -> None:
    frame = random_frame((10, 20, 3), np.uint8)
    image.publish(frame)
    with SharedImage(image.key) as other:
        np.testing.assert_array_equal(other.read(), frame)
        assert other.info().generation == 1
        other.publish(frame[::-1])
    np.testing.assert_array_equal(image.read(), frame[::-1])


@pytest.mark.parametrize(
    ("shape", "dtype", "channels"),
    [
        ((48, 64), np.uint8, 1),
        ((48, 64, 1), np.uint16, 1),
        ((48, 64, 3), np.float32, 3),
        ((48, 64, 4), np.uint8, 4),
    ],
)
def test_info_fields(image: SharedImage, shape: tuple, dtype: type, channels: int) -> None:
    before = time.time_ns()
    image.publish(np.zeros(shape, dtype))
    after = time.time_ns()
    info = image.info()
    assert isinstance(info, FrameInfo)
    assert info.shape == shape
    assert (info.height, info.width, info.channels) == (48, 64, channels)
    assert info.dtype == np.dtype(dtype)
    assert info.generation == 1
    assert before <= info.timestamp_ns <= after
    assert info.writer_pid == os.getpid()


def test_shape_changes_within_capacity(image: SharedImage) -> None:
    frames = [random_frame(s, d, seed=i) for i, (s, d) in enumerate(
        [((40, 40, 4), np.uint8), ((10, 5), np.float32), ((20, 30, 3), np.uint16)])]
    for frame in frames:
        image.publish(frame)
        np.testing.assert_array_equal(image.read(), frame)
        assert image.info().shape == frame.shape


frame_arrays = hnp.arrays(
    dtype=st.sampled_from(DTYPES),
    shape=st.one_of(
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        st.tuples(
            st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4])
        ),
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(frame_arrays, min_size=1, max_size=4))
def test_any_sequence_of_frames_round_trips(frames: list) -> None:
    key = f"shmi-test-hyp-{os.getpid()}-{time.monotonic_ns()}"
    with SharedImage(key) as image:
        for generation, frame in enumerate(frames, 1):
            assert image.publish(frame) == generation
            out = image.read()
            assert out.shape == frame.shape and out.dtype == frame.dtype
            assert out.tobytes() == np.ascontiguousarray(frame).tobytes()
    assert not os.path.exists("/dev/shm" + SharedImage(key).native_key)


@pytest.mark.parametrize("label", ["Noël-", "é" * 200, "k" * 500], ids=["accent", "long-utf8", "long"])
def test_any_key_works_and_survives_growth(unique_key, label: str) -> None:
    key = unique_key(label)
    with SharedImage(key) as image, SharedImage(key) as reader:
        image.publish(np.zeros((4, 4), np.uint8))
        assert image.native_key == SharedImage(key).native_key
        assert len(image.native_key) <= 30
        big = random_frame((500, 700, 3), np.uint16)
        image.publish(big)  # grows the store, which copies the key into the new segment
        np.testing.assert_array_equal(reader.read(), big)
        assert reader.info().generation == 2


def test_keys_that_differ_only_in_accents_are_apart(unique_key) -> None:
    suffix = unique_key()
    with SharedImage("Noël" + suffix) as one, SharedImage("Nol" + suffix) as other:
        one.publish(np.zeros((2, 2), np.uint8))
        other.publish(np.ones((3, 3), np.uint8))
        assert one.read().shape == (2, 2) and other.read().shape == (3, 3)
    unique_key.keys += ["Noël" + suffix, "Nol" + suffix]
