"""Bad input to SharedImage: a clear InvalidImageError, and nothing published."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from shmimage import (
    InvalidImageError,
    NoFrameError,
    NotFoundError,
    SharedImage,
    SharedMemoryError,
)
from workers_image import create_without_frame, shm_path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_header_png(width: int, height: int) -> bytes:
    """A PNG whose header claims an enormous image (no pixel data needed)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


def saved(tmp_path, name: str, fmt: str, size: tuple = (64, 48)) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path = tmp_path / name
    Image.fromarray(pixels).save(path, fmt)
    return path.read_bytes()


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


def assert_nothing_created(image: SharedImage) -> None:
    assert not os.path.exists(shm_path(image.native_key))
    with pytest.raises(NotFoundError):
        image.read()


def test_invalid_image_error_is_a_value_error() -> None:
    assert issubclass(InvalidImageError, ValueError)
    assert issubclass(InvalidImageError, SharedMemoryError)


def bad_files(tmp_path) -> dict:
    png = saved(tmp_path, "good.png", "PNG")
    jpeg = saved(tmp_path, "good.jpg", "JPEG")
    return {
        "text.png": b"this is not an image at all\n" * 10,
        "empty.png": b"",
        "noise.bin": bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8)),
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "header-only.png": png[:40],
        "bomb.png": huge_header_png(100_000, 100_000),
    }


@pytest.mark.parametrize(
    "name",
    ["text.png", "empty.png", "noise.bin", "truncated.png", "truncated.jpg", "header-only.png",
     "bomb.png"],
)
@pytest.mark.parametrize("how", ["publish", "load_from_file"])
def test_bad_files_name_the_file(image, tmp_path, name: str, how: str) -> None:
    path = tmp_path / name
    path.write_bytes(bad_files(tmp_path)[name])
    with pytest.raises(InvalidImageError) as caught:
        getattr(image, how)(path)
    assert str(path) in str(caught.value)
    assert_nothing_created(image)


def test_over_the_decompression_bomb_limit(image, tmp_path, monkeypatch) -> None:
    path = tmp_path / "ordinary.png"
    path.write_bytes(saved(tmp_path, "x.png", "PNG", size=(64, 48)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48 // 4)
    with pytest.raises(InvalidImageError, match="ordinary.png") as caught:
        image.publish(str(path))
    assert "large" in str(caught.value)
    assert_nothing_created(image)


def test_a_missing_file_is_file_not_found(image, tmp_path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        image.publish(path)
    assert_nothing_created(image)


BAD_ARRAYS = {
    "1-d": np.zeros(16, np.uint8),
    "0-d": np.array(3, np.uint8),
    "5-d": np.zeros((1, 1, 4, 4, 3), np.uint8),
    "0-rows": np.zeros((0, 4), np.uint8),
    "0-cols": np.zeros((4, 0, 3), np.uint8),
    "0-channels": np.zeros((4, 4, 0), np.uint8),
    "channels-first": np.zeros((3, 48, 64), np.uint8),
    "complex": np.zeros((4, 4), np.complex64),
    "object": np.zeros((4, 4), object),
    "str": np.zeros((4, 4), "U1"),
    "record": np.zeros((4, 4), [("a", np.uint8)]),
}


@pytest.mark.parametrize("name", list(BAD_ARRAYS))
def test_unsupported_arrays(image, name: str) -> None:
    with pytest.raises(InvalidImageError):
        image.publish(BAD_ARRAYS[name])
    assert_nothing_created(image)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((4,), np.uint8), ((2, 2, 2, 3, 1), np.uint8), ((0, 4), np.uint8), ((3, 48, 64), np.uint8),
     ((4, 4), np.complex64), ((4, 4), object), ((-1, 4), np.uint8), ((4.0, 4), np.uint8)],
)
def test_unsupported_loans(image, shape: tuple, dtype) -> None:
    with pytest.raises(InvalidImageError), image.loan(shape, dtype):
        pytest.fail("a bad loan was granted")
    assert_nothing_created(image)


@pytest.mark.parametrize("thing", [None, 42, 1.5, [[1, 2], [3, 4]], {"a": 1}, object()],
                         ids=["None", "int", "float", "list", "dict", "object"])
def test_things_that_are_not_images(image, thing) -> None:
    with pytest.raises(InvalidImageError):
        image.publish(thing)
    assert_nothing_created(image)


def test_bad_input_leaves_the_previous_frame_current(image, tmp_path) -> None:
    frame = np.full((8, 8, 3), 9, np.uint8)
    image.publish(frame)
    (tmp_path / "bad.png").write_bytes(b"nope")
    for bad in [np.zeros((8, 8), np.complex64), tmp_path / "bad.png", None]:
        with pytest.raises(InvalidImageError):
            image.publish(bad)
    assert image.info().generation == 1
    np.testing.assert_array_equal(image.read(), frame)


def test_nothing_published_is_no_frame_error(image) -> None:
    create_without_frame(image)
    assert os.path.exists(shm_path(image.native_key))
    for call in (image.read, image.info, image.to_pil):
        with pytest.raises(NoFrameError):
            call()
    with pytest.raises(NoFrameError), image.view():
        pass
    with pytest.raises(NoFrameError):
        SharedImage(image.key).load_from_memory()
    assert issubclass(NoFrameError, SharedMemoryError)


def test_reading_a_key_nobody_created(image) -> None:
    for call in (image.read, image.info, image.load_from_memory, image.to_pil):
        with pytest.raises(NotFoundError):
            call()
    with pytest.raises(TimeoutError):  # wait() waits for the key to appear
        image.wait(timeout=0.1)
    assert not image.is_attached


@pytest.mark.parametrize("key", [None, 5, b"bytes"])
def test_bad_keys(key) -> None:
    with pytest.raises(TypeError):
        SharedImage(key)


@pytest.mark.parametrize("capacity", [0, -1, 1.5, "10"])
def test_bad_capacity(capacity) -> None:
    with pytest.raises((ValueError, TypeError)):
        SharedImage("shmi-test-capacity", capacity=capacity)


def test_errors_name_the_key_then_the_native_name(unique_key) -> None:
    key = unique_key("named")
    image = SharedImage(key)
    for call in (image.read, image.info, image.to_pil):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert str(caught.value).startswith(f"no segment {key!r} ({image.native_key})")


def test_bad_input_errors_name_the_key_first(unique_key) -> None:
    key = unique_key("badinput")
    with SharedImage(key) as image:
        where = f"{key!r} ({image.native_key}): "
        with pytest.raises(InvalidImageError) as bad_array:
            image.publish(np.zeros((3, 480, 640), np.uint8))
        with pytest.raises(ValueError) as bad_meta:
            image.publish(np.zeros((2, 2), np.uint8), meta={"x": object()})
        with pytest.raises(InvalidImageError) as bad_shape, image.loan((2.0, 2)):
            pass
        for caught in (bad_array, bad_meta, bad_shape):
            assert str(caught.value).startswith(where), caught.value
        assert "moveaxis" in str(bad_array.value)
