"""PIL images, paths and files through Pillow: each kept in its own mode (1 -> bool,
L -> (H, W), LA, RGB, RGBA, I;16 -> uint16, I -> int32, F -> float32, P -> RGB or RGBA,
others -> RGB); load_from_file() stays RGBA, the example's format."""
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


def pillow_as(path: os.PathLike, mode: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert(mode))


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        yield img


# (format, suffix, mode saved, save options, lossless, mode stored, shape stored)
FORMATS = [
    ("PNG", ".png", "RGBA", {}, True, "RGBA", (30, 40, 4)),
    ("PNG", ".png", "L", {}, True, "L", (30, 40)),
    ("PNG", ".png", "P", {}, True, "RGBA", (30, 40, 4)),  # its palette has alpha
    ("JPEG", ".jpg", "RGB", {"quality": 90}, False, "RGB", (30, 40, 3)),
    ("BMP", ".bmp", "RGB", {}, True, "RGB", (30, 40, 3)),
    ("TIFF", ".tif", "RGBA", {}, True, "RGBA", (30, 40, 4)),
    ("TIFF", ".tif", "RGB", {"compression": "tiff_lzw"}, True, "RGB", (30, 40, 3)),
    ("WEBP", ".webp", "RGBA", {"lossless": True, "exact": True}, True, "RGBA", (30, 40, 4)),
    ("WEBP", ".webp", "RGB", {"quality": 80}, False, "RGB", (30, 40, 3)),
]


@pytest.mark.parametrize(
    ("fmt", "suffix", "mode", "options", "lossless", "stored", "shape"),
    FORMATS,
    ids=[f"{f[0]}-{f[2]}{'' if f[4] else '-lossy'}" for f in FORMATS],
)
def test_file_formats(image, tmp_path, fmt, suffix, mode, options, lossless, stored,
                      shape) -> None:
    source = Image.fromarray(rgba_pattern()).convert(mode)
    path = tmp_path / f"picture{suffix}"
    source.save(path, fmt, **options)
    image.publish(path)
    out = image.read()
    assert out.shape == shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, pillow_as(path, stored))
    if lossless:
        np.testing.assert_array_equal(out, np.asarray(source.convert(stored)))
    assert image.info().shape == shape


def test_xpm_written_by_hand(image, tmp_path) -> None:
    path = tmp_path / "hand.xpm"
    path.write_text(XPM)
    image.publish(path)  # a palette image with a transparent colour: RGBA
    np.testing.assert_array_equal(image.read(), XPM_PIXELS)


def test_sixteen_bit_png_is_kept_bit_exact(image, tmp_path) -> None:
    path = tmp_path / "deep.png"
    depth = np.arange(0, 60000, 50, dtype=np.uint16).reshape(30, 40)
    depth[0, :4] = [0, 1000, 30000, 65535]
    Image.fromarray(depth).save(path)
    image.publish(path)
    out = image.read()
    assert out.shape == (30, 40) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, depth)
    pil = image.to_pil()
    assert pil.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(pil), depth)


def test_sixteen_bit_pil_image_is_kept_bit_exact(image) -> None:
    depth = np.array([[0, 1000, 30000, 65535]] * 2, np.uint16)
    image.publish(Image.fromarray(depth))
    out = image.read()
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, depth)
    big_endian = Image.frombytes("I;16B", (4, 2), depth.astype(">u2").tobytes())
    image.publish(big_endian)
    np.testing.assert_array_equal(image.read(), depth)


@pytest.mark.parametrize("as_path", [str, pathlib.Path], ids=["str", "Path"])
def test_path_types(image, tmp_path, as_path) -> None:
    pixels = rgba_pattern()
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    image.publish(as_path(str(path)))
    np.testing.assert_array_equal(image.read(), pixels)


# mode -> (dtype, shape, the mode the stored pixels equal)
PIL_MODES = {
    "1": (np.bool_, (30, 40), "1"),
    "L": (np.uint8, (30, 40), "L"),
    "LA": (np.uint8, (30, 40, 2), "LA"),
    "P": (np.uint8, (30, 40, 4), "RGBA"),  # converted from RGBA: its palette has alpha
    "PA": (np.uint8, (30, 40, 4), "RGBA"),
    "RGB": (np.uint8, (30, 40, 3), "RGB"),
    "RGBA": (np.uint8, (30, 40, 4), "RGBA"),
    "CMYK": (np.uint8, (30, 40, 3), "RGB"),
    "YCbCr": (np.uint8, (30, 40, 3), "RGB"),
    "I": (np.int32, (30, 40), "I"),
    "I;16": (np.uint16, (30, 40), "I;16"),
    "F": (np.float32, (30, 40), "F"),
}


@pytest.mark.parametrize("mode", list(PIL_MODES))
def test_pil_images_keep_their_mode(image, mode: str) -> None:
    source = Image.fromarray(rgba_pattern()).convert(mode)
    dtype, shape, same_as = PIL_MODES[mode]
    image.publish(source)
    out = image.read()
    assert out.shape == shape and out.dtype == dtype
    np.testing.assert_array_equal(out, np.asarray(source.convert(same_as)))
    assert image.info().channels == (shape[2] if len(shape) == 3 else 1)


def test_wide_pil_values_are_exact(image) -> None:
    ints = np.array([[-(2**31), -1, 0, 2**31 - 1]], np.int32)
    image.publish(Image.fromarray(ints))
    np.testing.assert_array_equal(image.read(), ints)
    floats = np.array([[-1.5, 0.0, 1e30, np.pi]], np.float32)
    image.publish(Image.fromarray(floats))
    np.testing.assert_array_equal(image.read(), floats)


@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "transparent"])
def test_palette_images_are_rgba_only_with_transparency(image, tmp_path, transparent) -> None:
    palette = Image.fromarray(rgba_pattern(opaque=True)[..., :3]).convert("P")
    path = tmp_path / "palette.png"
    if transparent:
        palette.save(path, transparency=0)
    else:
        palette.save(path)
    image.publish(path)
    out = image.read()
    assert out.shape == ((30, 40, 4) if transparent else (30, 40, 3))
    np.testing.assert_array_equal(out, pillow_as(path, "RGBA" if transparent else "RGB"))
    if transparent:
        assert (out[..., 3] == 0).any() and (out[..., 3] == 255).any()


def test_one_bit_files_are_bool_masks(image, tmp_path) -> None:
    mask = (np.indices((30, 40)).sum(axis=0) % 3) == 0
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path)
    image.publish(path)
    out = image.read()
    assert out.dtype == np.bool_ and out.shape == (30, 40)
    np.testing.assert_array_equal(out, mask)
    assert image.to_pil().mode == "1"


def test_load_from_file_stays_rgba(image, tmp_path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(path)
    pixels = image.load_from_file(path)
    assert pixels.shape == (30, 40, 4) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.read(), pillow_rgba(path))


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
                        ((30, 40, 1), "L"), ((30, 40, 2), "LA")],
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


@pytest.mark.parametrize(("dtype", "mode"), [(np.uint16, "I;16"), (np.int32, "I"),
                                             (np.float32, "F"), (np.bool_, "1")])
@pytest.mark.parametrize("shape", [(30, 40), (30, 40, 1)])
def test_to_pil_of_single_channel_frames(image, dtype, mode, shape) -> None:
    frame = (rgba_pattern()[..., 0].astype(np.int64) * 257 - 3000).astype(dtype).reshape(shape)
    image.publish(frame)
    pil = image.to_pil()
    assert pil.mode == mode and pil.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(pil).reshape(shape), frame)


@pytest.mark.parametrize(("shape", "dtype"), [((4, 4, 3), np.uint16), ((4, 4, 3), np.float32),
                                              ((4, 4), np.int64), ((4, 4), np.float64),
                                              ((8, 8, 5), np.uint8)])
def test_to_pil_refuses_frames_pillow_cannot_hold(image, shape, dtype) -> None:
    image.publish(np.zeros(shape, dtype))
    with pytest.raises(InvalidImageError) as caught:
        image.to_pil()
    assert str(np.dtype(dtype)) in str(caught.value) and str(shape) in str(caught.value)


def test_palette_with_alpha_but_only_opaque_colours_is_rgb(image) -> None:
    opaque = Image.fromarray(rgba_pattern(opaque=True)).convert("P")
    assert opaque.palette.mode == "RGBA"
    image.publish(opaque)
    out = image.read()
    assert out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, np.asarray(opaque.convert("RGB")))
