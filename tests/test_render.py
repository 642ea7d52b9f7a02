"""render.py: any frame as 8-bit pixels for a screen or a file, with no Tk."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from shmimage.render import RateMeter, describe, printable, to_ppm, to_rgba8


def grey(rgba: np.ndarray) -> list[int]:
    assert rgba.shape[2] == 4 and (rgba[..., 0] == rgba[..., 1]).all()
    return rgba[0, :, 0].tolist()


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_integer_frames_are_stretched_from_lowest_to_highest(dtype) -> None:
    info = np.iinfo(dtype)
    low = max(info.min, -3)
    frame = np.array([[low, low + 1, low + 2, low + 6]], dtype)
    assert grey(to_rgba8(frame)) == [0, 43, 85, 255]


def test_floats_in_unit_range_keep_it_and_others_stretch() -> None:
    assert grey(to_rgba8(np.array([[0.0, 0.25, 0.5]], np.float32))) == [0, 64, 128]
    assert grey(to_rgba8(np.array([[-2.0, 0.0, 2.0]], np.float64))) == [0, 128, 255]
    assert grey(to_rgba8(np.array([[0.0, np.nan, np.inf, 1.0]], np.float16))) == [0, 0, 255, 255]
    assert grey(to_rgba8(np.full((1, 3), np.nan, np.float32))) == [0, 0, 0]


def test_a_frame_of_one_value_uses_the_dtypes_range() -> None:
    assert grey(to_rgba8(np.full((1, 2), 65535, np.uint16))) == [255, 255]
    assert grey(to_rgba8(np.full((1, 2), 0, np.int16))) == [128, 128]
    assert grey(to_rgba8(np.full((1, 2), 7, np.float32))) == [255, 255]


def test_alpha_is_scaled_by_the_dtype_not_stretched() -> None:
    frame = np.zeros((1, 2, 4), np.uint16)
    frame[0, :, 0] = [100, 200]
    frame[0, :, 3] = [32768, 65535]
    rgba = to_rgba8(frame)
    # colour is stretched over all three channels together (0..200), keeping hues
    assert rgba[0, :, 0].tolist() == [128, 255] and rgba[0, :, 3].tolist() == [128, 255]


def test_bool_masks_are_black_and_white() -> None:
    assert grey(to_rgba8(np.array([[True, False]]))) == [255, 0]


def test_a_4k_frame_becomes_a_box_sized_ppm() -> None:
    frame = np.zeros((2160, 3840), np.uint16)
    frame[:, 1920:] = 4000
    data, size = to_ppm(frame, (400, 300))
    assert size == (400, 225)
    header = b"P6 400 225 255\n"
    pixels = np.frombuffer(data[len(header):], np.uint8).reshape(225, 400, 3)
    assert data.startswith(header)
    assert (pixels[:, :195] == 0).all() and (pixels[:, 205:] == 255).all()


def test_describe_and_printable() -> None:
    assert describe((480, 640, 3), "uint8") == "640x480x3 uint8"
    assert describe((480, 640), "bool") == "640x480 bool"
    assert describe((8, 480, 640, 3), "float32") == "8 x 640x480x3 float32"
    assert printable("a\nb\tc") == "a\\nb\\tc"
    assert printable("x" * 100, 10) == "x" * 9 + "\u2026"
    assert printable("caf\u00e9") == "caf\u00e9"


def test_rate_meter_counts_generations_per_second() -> None:
    rate = RateMeter(window=10.0)
    assert rate.add(1, 0.0) is None
    assert rate.add(2, 0.5) == pytest.approx(2.0)
    assert rate.add(5, 1.0) == pytest.approx(4.0)  # skipped frames still count
    assert rate.add(1, 2.0) is None  # a new stream


def test_cli_get_imports_no_tk(unique_key, tmp_path) -> None:
    from shmimage import SharedImage

    key = unique_key("no-tk")
    with SharedImage(key) as image:
        image.publish(np.zeros((4, 4), np.float64))  # needs the 8-bit rendering
        code = ("import sys; from shmimage.cli import main; "
                f"rc = main(['get', {key!r}, '-o', {str(tmp_path / 'x.png')!r}]); "
                "assert 'tkinter' not in sys.modules and 'shmimage.viewer' not in sys.modules; "
                "sys.exit(rc)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.png").exists()
