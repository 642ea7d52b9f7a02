"""publish() input: every numeric dtype and channel count, byte orders and layouts,
encoded bytes, .npy paths, mode=, and the messages for what is refused."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from shmimage import InvalidImageError, SharedImage

# Every numeric dtype: bool, signed and unsigned 8..64 bits, float16/32/64.
ALL_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.float16, np.float32, np.float64]
SHAPES = [(5, 7), (5, 7, 1), (5, 7, 2), (5, 7, 3), (5, 7, 4), (6, 5, 7), (9, 8, 31)]


def extreme_frame(shape: tuple, dtype: type, seed: int = 0) -> np.ndarray:
    """Random values that include the dtype's extremes (and NaN/inf for floats)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if kind == "f":
        frame = rng.standard_normal(shape).astype(dtype)
        info = np.finfo(dtype)
        frame.flat[:5] = [info.max, info.min, np.inf, -np.inf, info.tiny][: frame.size]
        return frame
    info = np.iinfo(dtype)
    frame = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    frame.flat[:2] = [info.min, info.max]
    return frame


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


def png_bytes(array: np.ndarray, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG", **options)
    return out.getvalue()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_and_channel_count_round_trips_exactly(image, dtype, shape) -> None:
    frame = extreme_frame(shape, dtype)
    generation = image.publish(frame)
    out = image.read()
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    assert out.tobytes() == frame.tobytes()  # bit for bit, NaN and -0.0 included
    info = image.info()
    assert info.generation == generation and info.dtype == np.dtype(dtype)
    assert info.shape == shape and info.channels == (shape[2] if len(shape) == 3 else 1)
    with image.view() as view:
        assert view.tobytes() == frame.tobytes()


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint16, np.uint32,
                                   np.uint64, np.float16, np.float32, np.float64])
def test_byte_swapped_input_is_stored_native(image, dtype) -> None:
    frame = extreme_frame((6, 9, 3), dtype, seed=1)
    swapped = frame.astype(frame.dtype.newbyteorder())
    assert swapped.dtype.byteorder not in ("=", "|") and not swapped.dtype.isnative
    image.publish(swapped)
    out = image.read()
    assert out.dtype.isnative and out.dtype == np.dtype(dtype)
    assert out.tobytes() == frame.tobytes()
    assert image.info().dtype.isnative


@pytest.mark.parametrize("dtype", [np.bool_, np.int16, np.uint32, np.float64])
@pytest.mark.parametrize("make", [
    np.asfortranarray,
    lambda a: a[::2, ::-3],
    lambda a: a.transpose(1, 0, 2),
    lambda a: np.asfortranarray(a).astype(a.dtype.newbyteorder()),
], ids=["fortran", "strided", "transposed", "fortran-swapped"])
def test_fortran_and_strided_input_is_copied_correctly(image, make, dtype) -> None:
    frame = make(extreme_frame((12, 10, 3), dtype, seed=2))
    assert not frame.flags.c_contiguous
    image.publish(frame)
    out = image.read()
    assert out.flags.c_contiguous and out.dtype.isnative
    np.testing.assert_array_equal(out, frame)


def test_loan_takes_any_dtype_and_channel_count(image) -> None:
    with image.loan((4, 6, 2), np.int16) as frame:
        frame[...] = np.arange(48, dtype=np.int16).reshape(4, 6, 2) - 24
    out = image.read()
    assert out.dtype == np.int16 and out.shape == (4, 6, 2)
    assert out.min() == -24 and out.max() == 23


def test_numpy_asarray_is_read(image) -> None:
    frame = extreme_frame((7, 5, 3), np.int32)
    image.publish(frame)
    out = np.asarray(image)
    assert out.dtype == np.int32 and np.array_equal(out, frame)
    assert np.array_equal(np.asarray(image, dtype=np.float64), frame.astype(np.float64))
    assert np.array(image).shape == (7, 5, 3)


# ---- what is refused, and what the message says ---------------------------------------

@pytest.mark.parametrize("shape, axis", [((3, 480, 640), 0), ((1, 48, 64), 0),
                                         ((4, 48, 64), 0), ((8, 3, 48, 64), 1)])
def test_channels_first_gets_a_moveaxis_hint(image, shape, axis) -> None:
    with pytest.raises(InvalidImageError, match=rf"numpy\.moveaxis\(array, {axis}, -1\)"):
        image.publish(np.zeros(shape, np.uint8))
    with pytest.raises(InvalidImageError, match="moveaxis"), image.loan(shape):
        pass
    moved = np.moveaxis(np.zeros(shape, np.uint8), axis, -1)
    assert image.publish(moved[0] if moved.ndim == 4 else moved)  # the hint works


@pytest.mark.parametrize("bad, words", [
    (np.zeros((4, 4), np.complex64), "complex64"),
    pytest.param(np.zeros((4, 4), np.longdouble), np.dtype(np.longdouble).name,
                 marks=pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8,
                                          reason="long double is float64 here")),
    (np.zeros((4, 4), object), "object"),
    (np.zeros((4, 4), "U3"), "<U3"),
    (np.zeros((4,), np.uint8), "2 to 4 dimensions"),
    (np.zeros((2, 2, 2, 2, 2), np.uint8), "2 to 4 dimensions"),
    (np.zeros((0, 4), np.uint8), "positive"),
], ids=["complex", "longdouble", "object", "str", "1-d", "5-d", "empty"])
def test_unsupported_arrays_say_what_is_supported(image, bad, words) -> None:
    with pytest.raises(InvalidImageError) as caught:
        image.publish(bad)
    message = str(caught.value)
    assert words in message
    if "dtype" in message:
        assert "uint8..uint64" in message and "float16/32/64" in message


@pytest.mark.parametrize("shape", [(480.0, 640), (480, 640.5, 3), (np.float32(4), 4)])
def test_non_integer_dimensions_have_their_own_message(image, shape) -> None:
    with pytest.raises(InvalidImageError, match="must be integers") as caught, image.loan(shape):
        pass
    assert "positive" not in str(caught.value)
    with pytest.raises(InvalidImageError, match="must be positive"), image.loan((0, 640)):
        pass


def test_garbage_bytes_give_a_short_message_without_the_payload(image) -> None:
    payload = b"\x89PNG not really" + bytes(range(256)) * 400
    for data in (payload, bytearray(payload), memoryview(payload)):
        with pytest.raises(InvalidImageError) as caught:
            image.publish(data)
        message = str(caught.value)
        assert len(message) < 200, message
        assert f"{len(payload)} bytes" in message
        assert "not really" not in message and "\\x" not in message


def test_truncated_png_bytes_are_refused_briefly(image) -> None:
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    with pytest.raises(InvalidImageError) as caught:
        image.publish(data[: len(data) // 2])
    assert len(str(caught.value)) < 300


def test_bytes_are_decoded_never_taken_as_a_path(image, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "decoy.png")
    assert (tmp_path / "decoy.png").exists()
    with pytest.raises(InvalidImageError, match="encoded image bytes"):
        image.publish(b"decoy.png")


def test_a_long_bogus_path_is_shortened_in_the_message(image, tmp_path) -> None:
    path = tmp_path / ("x" * 200 + ".png")
    path.write_bytes(b"not an image at all")
    with pytest.raises(InvalidImageError) as caught:
        image.publish(str(path))
    assert len(str(caught.value)) < 250


def test_other_objects_are_refused_with_what_to_give(image) -> None:
    with pytest.raises(InvalidImageError, match="encoded image bytes"):
        image.publish([[1, 2], [3, 4]])


# ---- encoded bytes, .npy paths and mode= -----------------------------------------------

def test_encoded_bytes_of_every_kind(image) -> None:
    rgb = np.random.default_rng(3).integers(0, 255, (20, 30, 3), np.uint8)
    for data in (png_bytes(rgb), bytearray(png_bytes(rgb)), memoryview(png_bytes(rgb))):
        image.publish(data)
        np.testing.assert_array_equal(image.read(), rgb)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, "JPEG", quality=95)
    image.publish(jpeg.getvalue())
    out = image.read()
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    with Image.open(io.BytesIO(jpeg.getvalue())) as decoded:
        np.testing.assert_array_equal(out, np.asarray(decoded))


def test_sixteen_bit_png_bytes_are_bit_exact(image) -> None:
    depth = np.array([[0, 1000, 30000, 65535]] * 3, np.uint16)
    image.publish(png_bytes(depth))
    out = image.read()
    assert out.dtype == np.uint16 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, depth)


def test_npy_paths_are_published_as_arrays(image, tmp_path) -> None:
    frame = extreme_frame((6, 8, 2), np.int16)
    np.save(tmp_path / "frame.npy", frame)
    image.publish(tmp_path / "frame.npy")
    out = image.read()
    assert out.dtype == np.int16 and np.array_equal(out, frame)
    image.publish(str(tmp_path / "frame.npy"))
    assert image.info().generation == 2
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InvalidImageError, match="not a numpy array file"):
        image.publish(tmp_path / "broken.npy")


def test_mode_converts_first(image, tmp_path) -> None:
    rgb = np.random.default_rng(4).integers(0, 255, (10, 12, 3), np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    image.publish(path, mode="L")
    assert image.read().shape == (10, 12)
    image.publish(png_bytes(rgb), mode="RGBA")
    out = image.read()
    assert out.shape == (10, 12, 4) and np.array_equal(out[..., :3], rgb)
    image.publish(rgb, mode="L")  # arrays too, through Pillow
    np.testing.assert_array_equal(image.read(), np.asarray(Image.fromarray(rgb).convert("L")))
    image.publish(Image.fromarray(rgb), mode="I;16")
    assert image.read().dtype == np.uint16
    with pytest.raises(InvalidImageError, match="mode"):
        image.publish(rgb, mode="NOPE")
    with pytest.raises(InvalidImageError, match="no Pillow mode"):
        image.publish(np.zeros((4, 4, 3), np.float64), mode="L")
