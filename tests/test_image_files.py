"""PIL images, paths and files through Pillow: all stored as RGBA uint8 (H, W, 4)."""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from PIL import Image
from shmimage import InvalidImageError, SharedImage

XPM = """/* XPM */
static char *test[] = {
"4 3 3 1",
"r c #FF0000",
"g c #00FF00",
". c None",
"rg.r",
"grg.",
"..rg"
};
"""
R, G, NONE = [255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 0, 0]
XPM_PIXELS = np.array(
    [[R, G, NONE, R], [G, R, G, NONE], [NONE, NONE, R, G]], dtype=np.uint8
)


def rgba_pattern(height: int = 30, width: int = 40, opaque: bool = False) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    alpha = np.full_like(x, 255) if opaque else (x * 6 + y) % 256
    return np.stack([x * 6 % 256, y * 8 % 256, (x + y) * 3 % 256, alpha], -1).astype(np.uint8)


def pillow_rgba(path: os.PathLike) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"))


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


# (format, suffix, mode saved, save options, lossless)
FORMATS = [
    ("PNG", ".png", "RGBA", {}, True),
    ("PNG", ".png", "L", {}, True),
    ("PNG", ".png", "P", {}, True),
    ("JPEG", ".jpg", "RGB", {"quality": 90}, False),
    ("BMP", ".bmp", "RGB", {}, True),
    ("TIFF", ".tif", "RGBA", {}, True),
    ("TIFF", ".tif", "RGB", {"compression": "tiff_lzw"}, True),
    ("WEBP", ".webp", "RGBA", {"lossless": True, "exact": True}, True),
    ("WEBP", ".webp", "RGB", {"quality": 80}, False),
]


@pytest.mark.parametrize(
    ("fmt", "suffix", "mode", "options", "lossless"),
    FORMATS,
    ids=[f"{f[0]}-{f[2]}{'' if f[4] else '-lossy'}" for f in FORMATS],
)
def test_file_formats(image, tmp_path, fmt, suffix, mode, options, lossless) -> None:
    source = Image.fromarray(rgba_pattern()).convert(mode)
    path = tmp_path / f"picture{suffix}"
    source.save(path, fmt, **options)
    image.publish(path)
    out = image.read()
    assert out.shape == (30, 40, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pillow_rgba(path))
    if lossless:
        np.testing.assert_array_equal(out, np.asarray(source.convert("RGBA")))
    assert image.info().shape == (30, 40, 4)


def test_xpm_written_by_hand(image, tmp_path) -> None:
    path = tmp_path / "hand.xpm"
    path.write_text(XPM)
    image.publish(path)
    np.testing.assert_array_equal(image.read(), XPM_PIXELS)


def test_sixteen_bit_png_becomes_rgba_uint8(image, tmp_path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.arange(0, 60000, 50, dtype=np.uint16).reshape(30, 40)).save(path)
    image.publish(path)
    out = image.read()
    assert out.shape == (30, 40, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pillow_rgba(path))


@pytest.mark.parametrize("as_path", [str, pathlib.Path, os.fsencode], ids=["str", "Path", "bytes"])
def test_path_types(image, tmp_path, as_path) -> None:
    pixels = rgba_pattern()
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    image.publish(as_path(str(path)))
    np.testing.assert_array_equal(image.read(), pixels)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"])
def test_pil_images_are_stored_as_rgba(image, mode: str) -> None:
    source = Image.fromarray(rgba_pattern()).convert(mode)
    image.publish(source)
    out = image.read()
    assert out.shape == (30, 40, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(source.convert("RGBA")))
    assert image.info().channels == 4


def test_load_from_file_returns_pixels_and_stays_attached(image, tmp_path) -> None:
    pixels = rgba_pattern()
    path = tmp_path / "load.png"
    Image.fromarray(pixels).save(path)
    loaded = image.load_from_file(path)
    np.testing.assert_array_equal(loaded, pixels)
    assert image.is_attached
    np.testing.assert_array_equal(SharedImage(image.key).load_from_memory(), pixels)
    assert image.info().generation == 1


@pytest.mark.parametrize(
    ("shape", "mode"), [((30, 40, 4), "RGBA"), ((30, 40, 3), "RGB"), ((30, 40), "L"),
                        ((30, 40, 1), "L")],
)
def test_to_pil(image, shape: tuple, mode: str) -> None:
    frame = rgba_pattern()[:, :, : shape[2] if len(shape) == 3 else 1].reshape(shape)
    image.publish(frame)
    pil = image.to_pil()
    assert isinstance(pil, Image.Image)
    assert pil.mode == mode and pil.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(pil).reshape(shape), frame)


def test_to_pil_of_a_pil_image_round_trips(image) -> None:
    source = Image.fromarray(rgba_pattern())
    image.publish(source)
    assert image.to_pil().tobytes() == source.tobytes()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_to_pil_refuses_frames_pillow_cannot_hold(image, dtype) -> None:
    image.publish(np.zeros((4, 4, 3), dtype))
    with pytest.raises(InvalidImageError, match=str(np.dtype(dtype))):
        image.to_pil()
