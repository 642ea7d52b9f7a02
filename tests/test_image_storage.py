"""The frame store under SharedImage: every numeric dtype, 2 to 4 dimensions, store options."""
from __future__ import annotations

import numpy as np
import pytest
from shmimage import InvalidImageError, NoFrameError, SharedImage, _shmcore

NUMERIC = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"]
SHAPES = [(5, 7), (5, 7, 1), (5, 7, 2), (5, 7, 6), (3, 5, 7, 4)]


@pytest.fixture
def store(unique_key):
    """A frame store built by the core, and the image over the same key."""
    image = SharedImage(unique_key())
    created = _shmcore.FrameStore.attach(image.native_key, create=True, key=b"k", capacity=4096)
    yield created
    image.detach()
    created.segment.detach()


def sample(shape: tuple, dtype: str) -> np.ndarray:
    values = np.arange(int(np.prod(shape))).reshape(shape)
    return (values % 2 == 1) if dtype == "bool" else values.astype(dtype)


@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("shape", SHAPES)
def test_every_numeric_dtype_and_2_to_4_dims_round_trip(store, shape, dtype) -> None:
    frame = sample(shape, dtype)
    generation = store.publish(frame)
    _, out, meta = store.read()
    _, view, facts = store.view()
    assert meta[0] == shape and meta[1] == np.dtype(dtype) and meta[2] == generation
    assert facts[:3] == meta[:3]
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, frame)
    assert np.array_equal(view, frame) and not view.flags.writeable
    del view  # its pin, and its export of the segment


def test_byte_swapped_and_strided_arrays_are_stored_native(store) -> None:
    frame = np.arange(60, dtype=">u4").reshape(5, 12)[:, ::2]
    store.publish(frame)
    _, out, meta = store.read()
    assert meta[1] == np.dtype("=u4")
    assert np.array_equal(out, frame)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.complex64), np.zeros((4, 4), object),
                                 np.zeros(4, np.uint8), np.zeros((1, 2, 3, 4, 5), np.uint8)])
def test_what_storage_cannot_hold_is_invalid(store, bad) -> None:
    with pytest.raises(InvalidImageError):
        store.publish(bad)
    with pytest.raises(NoFrameError):
        store.view()


def test_store_options_are_in_the_segment(unique_key) -> None:
    image = SharedImage(unique_key())
    store = _shmcore.FrameStore.attach(image.native_key, create=True, capacity=10000, slots=3,
                                       max_slots=5, history=4)
    try:
        other = _shmcore.FrameStore.attach(image.native_key)
        assert other.options == {"capacity": 0, "slots": 3, "max_slots": 5, "history": 4,
                                 "slot_capacity": 12288}
        other.segment.detach()
    finally:
        store.segment.detach()


@pytest.mark.parametrize("options", [{"slots": 1}, {"slots": 3, "max_slots": 2},
                                     {"max_slots": 65}, {"history": 0}, {"history": 65}])
def test_store_options_out_of_bounds_are_refused(unique_key, options) -> None:
    image = SharedImage(unique_key())
    with pytest.raises(ValueError, match="store options out of bounds"):
        _shmcore.FrameStore.attach(image.native_key, create=True, capacity=4096, **options)


def test_a_grown_store_is_followed_by_the_core(unique_key) -> None:
    """Readers and writers holding the old store move to the new one in one call."""
    with SharedImage(unique_key()) as writer, SharedImage(writer.key) as reader:
        writer.publish(np.zeros((8, 8), np.uint8))
        assert reader.read().shape == (8, 8)
        old = reader._store
        writer.publish(np.ones((512, 512), np.uint8))  # grows
        assert old is not None and old.superseded
        assert reader.read().shape == (512, 512)
        assert old.successor is not None and reader._store is old.successor
