"""Turning what users hand us (arrays, PIL images, files) into frame arrays."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import InvalidImageError

DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_NATIVE = frozenset(DTYPES)


def check_frame_spec(
    shape: tuple[int, ...], dtype: np.dtype[Any]
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) of a supported frame, or InvalidImageError."""
    if len(shape) not in (2, 3):
        raise InvalidImageError(f"a frame has 2 or 3 dimensions, not {len(shape)}")
    if any(not isinstance(n, (int, np.integer)) or n <= 0 for n in shape):
        raise InvalidImageError(f"a frame's dimensions must be positive, not {shape}")
    if len(shape) == 3 and shape[2] not in (1, 3, 4):
        raise InvalidImageError(f"a frame has 1, 3 or 4 channels, not {shape[2]}")
    native = dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
    if native not in DTYPES:
        raise InvalidImageError(f"a frame's dtype is uint8, uint16 or float32, not {dtype}")
    return tuple(int(n) for n in shape), native


def as_frame_array(image: Any) -> np.ndarray:
    """An ndarray ready to publish: arrays keep shape and dtype, images become RGBA."""
    # The common case, checked cheaply: it is on the hot path of publish.
    if (
        type(image) is np.ndarray
        and image.dtype in _NATIVE
        and image.size
        and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)))
    ):
        return image
    if isinstance(image, np.ndarray):
        _shape, dtype = check_frame_spec(image.shape, image.dtype)
        array: np.ndarray = image if image.dtype == dtype else image.astype(dtype)
        return array
    if isinstance(image, (str, bytes, os.PathLike)):
        return load_image_file(image)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        return pil_to_rgba(image)
    raise InvalidImageError(
        f"cannot publish a {type(image).__name__}: give an ndarray, a PIL image or a path"
    )


def pil_to_rgba(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGBA"))


def load_image_file(path: str | bytes | os.PathLike[str]) -> np.ndarray:
    """Decode an image file with Pillow into RGBA uint8 (H, W, 4)."""
    from PIL import Image, UnidentifiedImageError

    name = os.fsdecode(path)
    try:
        with Image.open(name) as img:
            img.load()
            return pil_to_rgba(img)
    except FileNotFoundError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name}: not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{name}: over-large image ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"{name}: truncated or corrupt image ({exc})") from exc
