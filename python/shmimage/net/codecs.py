"""Optional compression of a frame's pixels: lz4, zstd (where installed), PNG/JPEG (Pillow).

Decoders write into the caller's array (a loaned frame) and never produce
more than the header's pixel count: a payload that decodes to anything else
is a WireError.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidImageError
from .wire import FrameHeader, WireError

_PACKAGES = {"lz4": "lz4", "zstd": "zstandard"}


@dataclass(frozen=True)
class Codec:
    name: str            # one of wire.ENCODINGS
    quality: int = 90    # JPEG only


def parse_codec(text: str | None) -> Codec:
    """``none``, ``lz4``, ``zstd``, ``png``, ``jpeg`` or ``jpeg:Q`` (Q in 1..95)."""
    if text is None or text == "none":
        return Codec("none")
    name, _, quality = text.partition(":")
    if name == "jpeg" and quality:
        if not quality.isdigit() or not 1 <= int(quality) <= 95:
            raise ValueError(f"JPEG quality must be 1 to 95, not {quality[:20]!r}")
        return Codec("jpeg", int(quality))
    if quality or name not in ("lz4", "zstd", "png", "jpeg"):
        raise ValueError(f"unknown compression {text[:40]!r}: none, lz4, zstd, png or jpeg[:Q]")
    if name in _PACKAGES:
        _module(name)
    return Codec(name)


def _module(name: str) -> Any:
    try:
        if name == "lz4":
            import lz4.block

            return lz4.block
        import zstandard

        return zstandard
    except ImportError as exc:
        raise ValueError(f"--compress {name} needs the {_PACKAGES[name]!r} package "
                         f"(pip install {_PACKAGES[name]})") from exc


def encode(pixels: np.ndarray, codec: Codec) -> tuple[str, Any]:
    """(encoding, payload) for one frame; raw pixels when the codec cannot hold it."""
    if codec.name == "lz4":
        return "lz4", _module("lz4").compress(pixels, store_size=False)
    if codec.name == "zstd":
        return "zstd", _module("zstd").ZstdCompressor(level=3).compress(pixels)
    if codec.name in ("png", "jpeg"):
        encoded = _encode_image(pixels, codec)
        if encoded is not None:
            return codec.name, encoded
    return "none", pixels


def _encode_image(pixels: np.ndarray, codec: Codec) -> bytes | None:
    from ..imageio import array_to_pil

    if codec.name == "jpeg" and not (pixels.dtype == np.uint8 and _channels(pixels) in (1, 3)):
        return None
    if pixels.ndim == 4:
        return None
    try:
        image = array_to_pil(pixels)
    except InvalidImageError:
        return None
    out = io.BytesIO()
    if codec.name == "png":
        image.save(out, format="PNG", compress_level=1)
    else:
        image.save(out, format="JPEG", quality=codec.quality)
    return out.getvalue()


def _channels(pixels: np.ndarray) -> int:
    return 1 if pixels.ndim == 2 else int(pixels.shape[-1])


def decode_into(header: FrameHeader, payload: Any, out: np.ndarray) -> None:
    """Decode a compressed payload into ``out`` (the header's shape and dtype)."""
    flat = out.reshape(-1).view(np.uint8)
    try:
        if header.encoding == "lz4":
            data = _module("lz4").decompress(payload, uncompressed_size=header.nbytes)
            _copy_exact(data, flat)
        elif header.encoding == "zstd":
            _zstd_into(payload, flat)
        else:
            _image_into(header, payload, out)
    except WireError:
        raise
    except ValueError as exc:  # a missing codec package
        raise WireError(str(exc)) from exc
    except Exception as exc:  # every codec has its own error types
        raise WireError(f"{header.encoding} payload does not decode: "
                        f"{type(exc).__name__}") from exc


def _copy_exact(data: Any, flat: np.ndarray) -> None:
    if len(data) != flat.nbytes:
        raise WireError(f"payload decodes to {len(data)} bytes, not {flat.nbytes}")
    flat[:] = np.frombuffer(data, np.uint8)


def _zstd_into(payload: Any, flat: np.ndarray) -> None:
    """Stream into the frame: never more than its size, whatever the payload says."""
    reader = _module("zstd").ZstdDecompressor().stream_reader(payload)
    view = flat.data
    done = 0
    while done < flat.nbytes:
        n = reader.readinto(view[done:])
        if not n:
            raise WireError(f"zstd payload decodes to {done} bytes, not {flat.nbytes}")
        done += n
    if reader.read(1):
        raise WireError("zstd payload decodes to more than the frame")


def _image_into(header: FrameHeader, payload: Any, out: np.ndarray) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(payload)) as image:
        height, width = header.shape[0], header.shape[1]
        if image.size != (width, height):  # before decoding: no bomb gets decoded
            raise WireError(f"image of {image.size} for a frame of {width}x{height}")
        pixels = np.asarray(image)
    if pixels.size == out.size and pixels.dtype != out.dtype and pixels.dtype.kind in "iu":
        pixels = pixels.astype(out.dtype)  # a 16-bit grey PNG that Pillow decodes as mode I
    if pixels.dtype != out.dtype or pixels.size != out.size:
        raise WireError(f"image decodes to {pixels.shape} {pixels.dtype}, "
                        f"not {out.shape} {out.dtype}")
    out[...] = pixels.reshape(out.shape)
