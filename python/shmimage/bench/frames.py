"""Test frames, names of temporary segments, and the memory probe."""
from __future__ import annotations

import os
import re
import secrets

import numpy as np

SIZES: dict[str, tuple[int, int]] = {
    "640x480": (480, 640),
    "1920x1080": (1080, 1920),
    "3840x2160": (2160, 3840),
}


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(H, W)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"size must look like 640x480, got {text!r}")
    return int(match[2]), int(match[1])


def make_frame(height: int, width: int) -> np.ndarray:
    """A deterministic RGBA uint8 frame of smooth gradients.

    Smooth content is the best case for the Qt baseline's PNG stream (a noisy
    camera frame makes its encoder up to 20x slower), so the "x faster than
    Qt" figures are lower bounds. Every other method copies bytes and does
    not care what they are.
    """
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    frame = np.empty((height, width, 4), np.uint8)
    frame[..., 0] = x
    frame[..., 1] = y
    frame[..., 2] = (x + y) / 2
    frame[..., 3] = 255
    return frame


def unique_name(tag: str) -> str:
    """A short name no other run uses (POSIX names stay well under 30 characters).

    "shb", a one-letter tag and four digits of the pid come first: shmimage keeps
    the first 8 characters of a key in its native name, so a run's segments can
    be told from another's.
    """
    return f"shb{tag}{os.getpid() % 10000:04d}{secrets.token_hex(3)}"


def rss_anon_bytes() -> int:
    """This process's anonymous resident memory (``RssAnon``), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise OSError("RssAnon is not reported by /proc/self/status on this system")
