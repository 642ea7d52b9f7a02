"""What goes over the wire, and the checks every message passes before use.

A frame is a two-part message: a JSON header and the payload (raw pixels, or
the same compressed). Control messages are one JSON part. Nothing a peer
claims is allocated or trusted before it is checked against the limits here.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

VERSION = 1
MAX_FRAME_BYTES = 1 << 30   # default bound on one frame's pixels (1 GiB)
MAX_META_BYTES = 64 << 10   # a frame's meta, encoded
MAX_HEADER_BYTES = MAX_META_BYTES + 4096
MAX_CONTROL_BYTES = 4096
MAX_DIM = 1 << 31
MAX_GENERATION = (1 << 63) - 1

# Native little-endian forms only: every platform shmimage builds for.
DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8",
                    "<f2", "<f4", "<f8"})
ENCODINGS = frozenset({"none", "lz4", "zstd", "png", "jpeg"})
CONTROL_OPS = frozenset({"hello", "credit", "ping", "bye", "welcome", "reset"})


class WireError(ValueError):
    """A message that breaks the protocol: counted and dropped, never used.

    Examples
    --------
    >>> from shmimage.net import WireError
    >>> from shmimage.net.wire import parse_control
    >>> try:
    ...     parse_control(b"not a control message")
    ... except WireError:
    ...     print("dropped")
    dropped
    """


@dataclass(frozen=True)
class FrameHeader:
    generation: int
    timestamp_ns: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    encoding: str
    size: int        # payload bytes on the wire
    gap: int         # generations the sender skipped just before this one
    meta: dict[str, Any] | None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def payload_bound(nbytes: int) -> int:
    """The largest payload an honest sender sends for ``nbytes`` of pixels (LZ4's
    worst case is the largest of the codecs; PNG/JPEG stay well under it)."""
    return nbytes + nbytes // 255 + 1024


def encode_frame_header(header: FrameHeader) -> bytes:
    fields: dict[str, Any] = {
        "v": VERSION, "op": "frame", "gen": header.generation, "ts": header.timestamp_ns,
        "shape": list(header.shape), "dtype": header.dtype.str, "enc": header.encoding,
        "size": header.size, "gap": header.gap,
    }
    if header.meta:
        fields["meta"] = header.meta
    return json.dumps(fields, separators=(",", ":")).encode()


def encode_control(op: str, **fields: Any) -> bytes:
    return json.dumps({"v": VERSION, "op": op, **fields}, separators=(",", ":")).encode()


def _parse(data: bytes, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise WireError(f"header of {len(data)} bytes (at most {limit})")
    try:
        fields = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, absurd numbers or nesting
        raise WireError("header is not JSON") from exc
    if not isinstance(fields, dict):
        raise WireError("header is not a JSON object")
    version = fields.get("v")
    if _int(version) is None or version != VERSION:
        raise WireError(f"unsupported protocol version {str(version)[:20]!r}")
    return fields


def _int(value: Any, low: int = 0, high: int = MAX_GENERATION) -> int | None:
    """``value`` when it is an int (not bool) within [low, high], else None."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def _field(fields: dict[str, Any], name: str, low: int = 0, high: int = MAX_GENERATION) -> int:
    value = _int(fields.get(name), low, high)
    if value is None:
        raise WireError(f"bad {name!r} field")
    return value


def parse_control(data: bytes) -> dict[str, Any]:
    """A control message's fields, checked: op known, numbers in range."""
    fields = _parse(data, MAX_CONTROL_BYTES)
    op = fields.get("op")
    if not isinstance(op, str) or op not in CONTROL_OPS:
        raise WireError(f"unknown control message {str(op)[:20]!r}")
    if op == "credit":
        _field(fields, "n", 1, 1 << 16)
    if op == "hello":
        if fields.get("mode") not in ("lossy", "lossless"):
            raise WireError("hello without a mode")
        _field(fields, "credit", 1, 1 << 16)
        if fields.get("after") is not None:
            _field(fields, "after")
    if op == "welcome":
        if fields.get("mode") not in ("lossy", "lossless"):
            raise WireError("welcome without a mode")
        if fields.get("after") is not None:
            _field(fields, "after")
    return fields


def parse_frame_header(data: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> FrameHeader:
    """A frame header, checked against itself and the limits; WireError otherwise."""
    fields = _parse(data, MAX_HEADER_BYTES)
    if fields.get("op") != "frame":
        raise WireError("not a frame header")
    shape = fields.get("shape")
    if not isinstance(shape, list) or not 2 <= len(shape) <= 4:
        raise WireError("a frame's shape has 2 to 4 dimensions")
    dims = tuple(_int(n, 1, MAX_DIM) for n in shape)
    if any(n is None for n in dims):
        raise WireError("bad dimension in the frame's shape")
    dtype_name = fields.get("dtype")
    if not isinstance(dtype_name, str) or dtype_name not in DTYPES:
        raise WireError(f"unsupported dtype {str(dtype_name)[:20]!r}")
    encoding = fields.get("enc")
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise WireError(f"unknown encoding {str(encoding)[:20]!r}")
    meta = fields.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise WireError("meta is not an object")
    header = FrameHeader(
        generation=_field(fields, "gen", 1), timestamp_ns=_field(fields, "ts"),
        shape=tuple(n for n in dims if n is not None), dtype=np.dtype(dtype_name),
        encoding=encoding, size=_field(fields, "size"), gap=_field(fields, "gap"),
        meta=meta or None)
    if header.nbytes > max_frame_bytes:
        raise WireError(f"a frame of {header.nbytes} bytes (at most {max_frame_bytes})")
    if encoding == "none" and header.size != header.nbytes:
        raise WireError(f"payload of {header.size} bytes for {header.nbytes} bytes of pixels")
    if header.size > payload_bound(header.nbytes):
        raise WireError(f"payload of {header.size} bytes for {header.nbytes} bytes of pixels")
    return header
