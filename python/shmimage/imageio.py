"""Turning what users hand us (arrays, PIL images, files, encoded bytes) into frame arrays.

Arrays keep their shape and dtype (stored in native byte order); images keep
their decoded mode: ``1`` -> bool, ``L`` -> uint8 (H, W), ``LA`` -> (H, W, 2),
``RGB``/``RGBA``, ``I;16*`` -> uint16, ``I`` -> int32, ``F`` -> float32, ``P``
-> RGB or RGBA, anything else -> RGB.
"""
from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from .errors import InvalidImageError

# Every numeric dtype a frame can have, in native byte order.
DTYPES = tuple(np.dtype(c) for c in "?bhilqBHILQefd")
_NATIVE = frozenset(DTYPES)
SUPPORTED = (
    "frames are (H, W), (H, W, C) or (N, H, W, C) arrays of bool, int8..int64, "
    "uint8..uint64 or float16/32/64"
)
# Pillow modes whose pixels are stored as they are.
_KEPT_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "I", "F"})
# Modes with an alpha channel that convert to the nearest mode we keep.
_ALPHA_MODES = {"PA": "RGBA", "RGBa": "RGBA", "La": "LA"}
_SHOWN_CHARS = 120


def shorten(text: str, limit: int = _SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, for messages that quote user input."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _channels_first(shape: tuple[int, ...]) -> int | None:
    """The axis that looks like channels in a channels-first shape, else None:
    at most 4 along it and more than 4 along both axes after it, as in
    (3, 480, 640); a small frame with many channels, (3, 3, 7), is not."""
    if len(shape) < 3:
        return None
    axis = len(shape) - 3
    return axis if shape[axis] <= 4 < min(shape[axis + 1:]) else None


def check_frame_spec(
    shape: tuple[int, ...], dtype: np.dtype[Any]
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, native dtype) of a supported frame, or InvalidImageError saying what is."""
    if len(shape) not in (2, 3, 4):
        raise InvalidImageError(f"a frame has 2 to 4 dimensions, not {len(shape)}: {SUPPORTED}")
    if any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) for n in shape):
        raise InvalidImageError(f"a frame's dimensions must be integers, not {shorten(repr(shape))}")
    if any(n <= 0 for n in shape):
        raise InvalidImageError(f"a frame's dimensions must be positive, not {shape}")
    axis = _channels_first(shape)
    if axis is not None:
        raise InvalidImageError(
            f"shape {tuple(int(n) for n in shape)} looks like channels first; frames keep "
            f"channels last: pass numpy.moveaxis(array, {axis}, -1)")
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    if native not in _NATIVE:
        raise InvalidImageError(f"a frame's dtype cannot be {dtype}: {SUPPORTED}")
    return tuple(int(n) for n in shape), native


def as_frame_array(image: Any, mode: str | None = None) -> np.ndarray:
    """An ndarray ready to publish from an array, a PIL image, a path or encoded bytes.

    ``mode`` (a Pillow mode) converts the image first.
    """
    # The common case, checked cheaply: it is on the hot path of publish.
    if (
        mode is None
        and type(image) is np.ndarray
        and image.dtype in _NATIVE
        and image.size
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] <= 4))
    ):
        return image
    if isinstance(image, np.ndarray):
        return _array(np.asarray(image), mode)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_bytes(image, mode)
    if isinstance(image, (str, os.PathLike)):
        return load_path(image, mode)
    from PIL import Image

    if isinstance(image, Image.Image):
        return pil_to_array(image, mode)
    raise InvalidImageError(
        f"cannot publish a {type(image).__name__}: give an ndarray, a PIL image, "
        "a path or encoded image bytes"
    )


def _array(array: np.ndarray, mode: str | None) -> np.ndarray:
    if mode is not None:
        return pil_to_array(array_to_pil(array), mode)
    _shape, dtype = check_frame_spec(array.shape, array.dtype)
    # Non-contiguous and Fortran-order arrays are copied into the slot as they
    # are; only a foreign byte order needs converting here.
    return array if array.dtype == dtype else array.astype(dtype)


def array_to_pil(frame: np.ndarray) -> Any:
    """A PIL image of a frame Pillow can represent, else InvalidImageError.

    uint8 (H, W) or (H, W, 1..4), and single-channel bool, uint16, int32, float32.
    """
    from PIL import Image

    array = frame[:, :, 0] if frame.ndim == 3 and frame.shape[2] == 1 else frame
    single = array.ndim == 2
    ok = (array.dtype == np.uint8 and (single or (array.ndim == 3 and array.shape[2] <= 4))) or (
        single and array.dtype in (np.dtype(bool), np.dtype(np.uint16), np.dtype(np.int32),
                                   np.dtype(np.float32))
    )
    if not ok:
        raise InvalidImageError(
            f"a frame of shape {tuple(frame.shape)} and dtype {frame.dtype} has no Pillow mode "
            "(Pillow holds uint8 with 1 to 4 channels, and single-channel bool, uint16, "
            "int32 or float32); use read()")
    return Image.fromarray(np.ascontiguousarray(array))


def pil_to_array(image: Any, mode: str | None = None) -> np.ndarray:
    """The pixels of a PIL image in the frame its mode maps to."""
    if mode is not None:
        try:
            image = image.convert(mode)
        except (ValueError, KeyError) as exc:
            raise InvalidImageError(f"cannot convert a {image.mode} image to mode "
                                    f"{shorten(repr(mode))}") from exc
    kept = image.mode
    # Pillow before 10 decodes a 16-bit grey PNG as "I": PNG has no 32-bit grey.
    if kept.startswith("I;16") or (kept == "I" and getattr(image, "format", None) == "PNG"):
        return np.asarray(image).astype(np.uint16)
    if kept not in _KEPT_MODES:
        image = image.convert(_converted_mode(image))
    array: np.ndarray = np.asarray(image)
    return array


def _converted_mode(image: Any) -> str:
    if image.mode == "P":
        return "RGBA" if "transparency" in image.info or _palette_alpha(image) else "RGB"
    return _ALPHA_MODES.get(image.mode, "RGB")


def _palette_alpha(image: Any) -> bool:
    """Whether a palette image uses a palette colour that is not opaque."""
    if image.palette is None or image.palette.mode != "RGBA":
        return False
    alpha = np.frombuffer(bytes(image.getpalette("RGBA")), np.uint8)[3::4]
    used = np.unique(np.asarray(image))
    used = used[used < alpha.size]
    return bool((alpha[used] < 255).any())


def load_path(path: str | os.PathLike[str], mode: str | None = None) -> np.ndarray:
    """A ``.npy`` array as it is, or an image file decoded in its own mode."""
    name = os.fspath(path)
    if name.lower().endswith(".npy"):
        return _array(load_npy(name), mode)
    return _decode(name, shorten(name), mode)


def load_npy(name: str) -> np.ndarray:
    try:
        array: np.ndarray = np.load(name, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidImageError(f"{shorten(name)}: not a numpy array file "
                                f"({shorten(str(exc))})") from exc
    if not isinstance(array, np.ndarray):
        raise InvalidImageError(f"{shorten(name)}: holds several arrays, not one frame")
    return array


def decode_bytes(data: bytes | bytearray | memoryview, mode: str | None = None) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) decoded in their own mode."""
    payload = data if isinstance(data, bytes) else bytes(memoryview(data))
    return _decode(io.BytesIO(payload), f"encoded image bytes ({len(payload)} bytes)", mode)


def _decode(source: str | io.BytesIO, what: str, mode: str | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as img:
            img.load()
            array = pil_to_array(img, mode)
            return array
    except FileNotFoundError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{what}: not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{what}: over-large image ({shorten(str(exc))})") from exc
    except InvalidImageError:
        raise
    except OSError as exc:
        if exc.errno is not None:  # the file system's word (a directory, no permission)
            raise
        raise InvalidImageError(f"{what}: truncated or corrupt image "
                                f"({shorten(str(exc))})") from exc
    except (SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"{what}: truncated or corrupt image "
                                f"({shorten(str(exc))})") from exc


def load_image_file(path: str | bytes | os.PathLike[str]) -> np.ndarray:
    """Decode an image file with Pillow into RGBA uint8 (H, W, 4): the example's format."""
    name = os.fsdecode(path)
    return _decode(name, shorten(name), "RGBA")
