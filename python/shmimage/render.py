"""Any frame as something a screen or an 8-bit file can show; no Tk in here.

uint8 is shown as it is; bool as black and white; other integers and floats
are stretched from the frame's lowest to its highest value (floats already in
[0, 1] keep that range; a frame of one value uses the dtype's range), alpha
channels are scaled by the dtype's range, never stretched. One channel is
grey, two are grey and alpha, three RGB, four RGBA; of more channels the first
three are shown as RGB; of a batch (N, H, W, C), the first frame.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidImageError

BACKGROUND = (217, 217, 217)


def first_image(frame: np.ndarray) -> np.ndarray:
    """The (H, W, C) image to show: a batch's first frame, (H, W) as one channel."""
    if frame.ndim == 4:
        frame = frame[0]
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or 0 in frame.shape:
        raise InvalidImageError(f"cannot display a frame of shape {tuple(frame.shape)}")
    return frame


def _fixed_range(dtype: np.dtype[Any]) -> tuple[float, float]:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _value_range(values: np.ndarray) -> tuple[float, float]:
    """Where the stretch of the colour channels starts and ends."""
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        if not finite.size:
            return 0.0, 1.0
        low, high = float(finite.min()), float(finite.max())
        if low >= 0.0 and high <= 1.0:
            return 0.0, 1.0
    else:
        low, high = float(values.min()), float(values.max())
    if low == high:
        return _fixed_range(values.dtype)
    return low, high


def to_uint8(values: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """``values`` mapped linearly from ``value_range`` to 0..255 (NaN -> 0)."""
    low, high = value_range
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    out: np.ndarray = (np.clip(scaled, 0.0, 255.0) + 0.5).astype(np.uint8)
    return out


def normalise(image: np.ndarray) -> np.ndarray:
    """An (H, W, C) image of any dtype as uint8, colour stretched and alpha scaled."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        mask: np.ndarray = image.astype(np.uint8) * np.uint8(255)
        return mask
    colour_channels = 3 if image.shape[2] == 4 else (1 if image.shape[2] == 2 else image.shape[2])
    colour = image[:, :, :colour_channels]
    parts = [to_uint8(colour, _value_range(colour))]
    if colour_channels < image.shape[2]:
        parts.append(to_uint8(image[:, :, colour_channels:], _fixed_range(image.dtype)))
    return np.concatenate(parts, axis=2) if len(parts) > 1 else parts[0]


def to_rgba8(frame: np.ndarray) -> np.ndarray:
    """Any frame SharedImage holds, of any dtype and shape, as RGBA uint8 (H, W, 4)."""
    image = first_image(frame)
    if image.dtype.kind not in "biuf":
        raise InvalidImageError(f"cannot display frames of dtype {image.dtype}")
    if image.shape[2] > 4:
        image = image[:, :, :3]
    image = normalise(image)
    channels = image.shape[2]
    grey = image[:, :, :1]
    if channels <= 2:
        image = np.concatenate([grey, grey, grey, image[:, :, 1:]], axis=2)
    if image.shape[2] == 3:
        image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(image)


def fit_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with the image's aspect ratio that fits in ``box``."""
    scale = min(box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _thinned(frame: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Every k-th row and column of a frame far larger than ``box``: the
    Lanczos resize after it then works on a few times the box's pixels, not
    on a whole 4K frame."""
    height, width = frame.shape[-3:-1] if frame.ndim == 4 else frame.shape[:2]
    step = int(min(width / box[0], height / box[1]) // 2)
    if step < 2:
        return frame
    if frame.ndim == 4:
        return frame[:1, ::step, ::step]
    return frame[::step, ::step]


def to_ppm(frame: np.ndarray, box: tuple[int, int]) -> tuple[bytes, tuple[int, int]]:
    """The frame scaled to fit ``box``, over the window's grey, as binary PPM bytes."""
    from PIL import Image

    rgba = to_rgba8(_thinned(frame, box))
    height, width = first_image(frame).shape[:2]
    image = Image.fromarray(rgba)
    size = fit_size(width, height, box)
    if size != image.size:
        if size[0] < image.width:
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        else:  # enlarging: keep pixels crisp
            image = image.resize(size, Image.Resampling.NEAREST)
    flat = Image.new("RGB", image.size, BACKGROUND)
    flat.paste(image, mask=image.getchannel("A"))
    header = f"P6 {flat.width} {flat.height} 255\n".encode("ascii")
    return header + flat.tobytes(), flat.size


def describe(shape: Any, dtype: Any) -> str:
    """``640x480x3 uint8``: width first, as image sizes are said; a batch as
    ``4 x 640x480x3 uint8``."""
    dims = [int(n) for n in shape]
    batch = ""
    if len(dims) == 4:
        batch, dims = f"{dims[0]} x ", dims[1:]
    return batch + "x".join(str(n) for n in (dims[1], dims[0], *dims[2:])) + f" {dtype}"


def printable(text: str, limit: int = 48) -> str:
    """``text`` safe for one line of a table or a status line: control and
    other unprintable characters escaped, cut at ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class RateMeter:
    """Frames per second from (generation, seconds) pairs of the last few seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._seen: list[tuple[int, float]] = []

    def add(self, generation: int, seconds: float) -> float | None:
        seen = self._seen
        if seen and generation < seen[-1][0]:
            seen.clear()  # a new stream under the same key
        if not seen or generation != seen[-1][0]:
            seen.append((generation, seconds))
        while len(seen) > 2 and seconds - seen[0][1] > self.window:
            del seen[0]
        (g0, t0), (g1, t1) = seen[0], seen[-1]
        if g1 == g0 or t1 <= t0:
            return None
        return (g1 - g0) / (t1 - t0)
