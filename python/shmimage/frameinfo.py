"""What a frame is, beside its pixels: `FrameInfo`, `Frame`, and its meta."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import numpy as np

from .errors import IncompatibleSegmentError

META_MAX = 65536  # bytes of encoded meta per frame (frames.h: FRM_META_MAX)


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """Facts of one frame, read with its pixels.

    Attributes
    ----------
    shape, width, height, channels, dtype
        Its geometry; a batch (N, H, W, C) describes each of its frames.
    generation
        Its generation (+1 per publish).
    timestamp_ns
        Wall-clock nanoseconds when it was published.
    writer_pid
        The publishing process.
    meta
        The dict published with it (empty when none was).

    Examples
    --------
    >>> import numpy as np, os, shmimage
    >>> with shmimage.SharedImage("docs-frame-info") as img:
    ...     _ = img.publish(np.zeros((4, 6, 3), np.uint8), meta={"index": 0})
    ...     info = img.info()
    ...     info.shape, info.generation, info.writer_pid == os.getpid(), info.meta
    ((4, 6, 3), 1, True, {'index': 0})
    """

    shape: tuple[int, ...]
    width: int
    height: int
    channels: int
    dtype: np.dtype
    generation: int
    timestamp_ns: int
    writer_pid: int
    meta: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)


class Frame(NamedTuple):
    """A frame's pixels and the facts of that same frame.

    Returned by `SharedImage.read_frame` (a private copy) and yielded by
    `SharedImage.view_frame` (a pinned view); pickles as a value.

    Attributes
    ----------
    pixels : numpy.ndarray
        The frame's pixels.
    info : FrameInfo
        Generation, timestamp, writer and meta of those very pixels.

    Examples
    --------
    >>> import numpy as np, shmimage
    >>> with shmimage.SharedImage("docs-frame") as img:
    ...     _ = img.publish(np.zeros((2, 2), np.uint8), meta={"index": 4})
    ...     pixels, info = img.read_frame()       # a Frame unpacks as a tuple
    ...     pixels.shape, info.meta["index"]
    ((2, 2), 4)
    """

    pixels: np.ndarray
    info: FrameInfo


def encode_meta(meta: dict[str, Any] | None) -> bytes | None:
    """JSON bytes of a frame's meta; ValueError past META_MAX or not JSON."""
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, not {type(meta).__name__}")
    try:
        data = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must be JSON-serialisable: {e}") from None
    if len(data) > META_MAX:
        raise ValueError(f"meta is {len(data)} bytes encoded, at most {META_MAX}")
    return data


def decode_meta(data: bytes, where: str) -> dict[str, Any]:
    """The dict stored with a frame; IncompatibleSegmentError for bytes
    that are not what a writer stores."""
    if not data:
        return {}
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise IncompatibleSegmentError(f"{where}: a frame's meta is not a JSON object")
    return meta


#: Geometry fields per (shape, dtype) seen: a stream's frames rarely change
#: shape, and building a FrameInfo field by field through a frozen
#: dataclass's __init__ cost as much as pinning the frame.
_GEOMETRY: dict[tuple[Any, Any], dict[str, Any]] = {}
_GEOMETRY_MAX = 64


def _geometry(shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
    frame = shape[1:] if len(shape) == 4 else shape
    geometry = {"shape": shape, "width": frame[1], "height": frame[0],
                "channels": frame[2] if len(frame) == 3 else 1, "dtype": dtype}
    if len(_GEOMETRY) >= _GEOMETRY_MAX:
        _GEOMETRY.clear()
    _GEOMETRY[(shape, dtype)] = geometry
    return geometry


def frame_info(facts: tuple[Any, ...], where: str) -> FrameInfo:
    """A FrameInfo from the core's facts (shape, dtype, generation,
    timestamp_ns, writer_pid, meta bytes)."""
    shape, dtype, generation, timestamp_ns, pid, meta = facts
    geometry = _GEOMETRY.get((shape, dtype))
    if geometry is None:
        geometry = _geometry(shape, dtype)
    info: FrameInfo = object.__new__(FrameInfo)
    # Every field set at once, as __init__ would (frozen: not through setattr).
    info.__dict__.update(geometry, generation=generation, timestamp_ns=timestamp_ns,
                         writer_pid=pid, meta=decode_meta(meta, where) if meta else {})
    return info
