"""Self-checking frames: a header with a stamp and a CRC over everything else.

Layout of a frame's bytes (any shape, uint8): magic (4), writer pid (4),
stamp (8), byte count (8), CRC-32 (4), 4 spare bytes, then pseudo-random
payload. The CRC covers every byte except its own field, so a frame mixed
from two publishes, cut short, or changed while pinned fails `check`.
The stamp comes from a counter incremented under a shared lock just before
the publish, so across all writers it grows in publish order: a reader that
sees it go back has been handed an older frame after a newer one.
"""
from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import numpy as np

HEADER = struct.Struct("<4sIQQI4x")
MAGIC = b"SOAK"  # a frame meant to be published
CANCELLED = b"CNCL"  # a loan() that is cancelled: must never be handed out
UNORDERED = 0  # the stamp of frames published outside the lock (the CLI's)

SHAPES = [(16, 16, 3), (48, 64, 3), (120, 160, 3), (240, 320, 3), (480, 640, 3)]
WEIGHTS = [0.15, 0.3, 0.3, 0.2, 0.05]  # mostly small, now and then one that grows the store


class Verdict(NamedTuple):
    ok: bool
    magic: bytes
    pid: int
    stamp: int


def pick_shape(rng: np.random.Generator) -> tuple[int, int, int]:
    h, w, c = SHAPES[int(rng.choice(len(SHAPES), p=WEIGHTS))]
    return (h, w, c)


def fill(out: np.ndarray, rng: np.random.Generator, pid: int, magic: bytes = MAGIC) -> None:
    """Random payload and a header without stamp; `seal` finishes it."""
    flat = out.reshape(-1)
    flat[HEADER.size:] = rng.integers(0, 256, flat.size - HEADER.size, dtype=np.uint8)
    flat[: HEADER.size] = np.frombuffer(HEADER.pack(magic, pid, 0, flat.size, 0), np.uint8)


def seal(out: np.ndarray, stamp: int) -> None:
    """Write the stamp and the CRC: the frame is complete from here on."""
    flat = out.reshape(-1)
    magic, pid, _, nbytes, _ = HEADER.unpack(flat[: HEADER.size].tobytes())
    head = HEADER.pack(magic, pid, stamp, nbytes, 0)
    crc = zlib.crc32(flat[HEADER.size:].data)
    crc = zlib.crc32(head[:24], crc)
    flat[: HEADER.size] = np.frombuffer(HEADER.pack(magic, pid, stamp, nbytes, crc), np.uint8)


def make(rng: np.random.Generator, pid: int, magic: bytes = MAGIC) -> np.ndarray:
    frame = np.empty(pick_shape(rng), np.uint8)
    fill(frame, rng, pid, magic)
    return frame


def check(frame: np.ndarray) -> Verdict:
    """Whether a frame handed out is one complete, sealed frame."""
    if frame.dtype != np.uint8 or frame.nbytes < HEADER.size or not frame.flags.c_contiguous:
        return Verdict(False, b"", 0, 0)
    flat = frame.reshape(-1)
    magic, pid, stamp, nbytes, crc = HEADER.unpack(flat[: HEADER.size].tobytes())
    head = HEADER.pack(magic, pid, stamp, nbytes, 0)
    ok = (
        magic in (MAGIC, CANCELLED)
        and nbytes == flat.size
        and zlib.crc32(head[:24], zlib.crc32(flat[HEADER.size:].data)) == crc
    )
    return Verdict(ok, magic, pid, stamp)
