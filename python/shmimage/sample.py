"""The bundled sample image, drawn with numpy alone so it is the same everywhere.

The picture: two "process" boxes under a banded sky, an arrow carrying a
small image from the left box to the right one, and the word "shmimage" in
a 5x7 pixel font.  Only flat colours and hard edges, so it compresses to a
small PNG and survives nearest-neighbour scaling with its colours intact.

Run ``python -m shmimage.sample [OUT]`` to redraw ``data/sample.png``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 400, 300
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "sample.png"

# 5x7 glyphs for the letters we need, one string per row, '#' is ink.
_GLYPHS = {
    "s": [".....", ".....", ".####", "#....", ".###.", "....#", "####."],
    "h": ["#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#"],
    "m": [".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"],
    "i": ["..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."],
    "a": [".....", ".....", ".###.", "....#", ".####", "#...#", ".####"],
    "g": [".....", ".####", "#...#", "#...#", ".####", "....#", ".###."],
    "e": [".....", ".....", ".###.", "#...#", "#####", "#....", ".###."],
}


def _fill(canvas: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int]) -> None:
    canvas[mask, :3] = rgb


def _grid() -> np.ndarray:
    """Row and column indices, stacked: unpack as `y, x = _grid()`."""
    return np.mgrid[0:HEIGHT, 0:WIDTH]


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    y, x = _grid()
    mask: np.ndarray = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return mask


def _disc(cx: int, cy: int, r: int) -> np.ndarray:
    y, x = _grid()
    mask: np.ndarray = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    return mask


def _draw_sky(canvas: np.ndarray) -> None:
    bands = 12
    for band in range(bands):
        top = band * HEIGHT // bands
        bottom = (band + 1) * HEIGHT // bands
        shade = (40 + 8 * band, 70 + 10 * band, 150 + 8 * band)
        _fill(canvas, _rect(0, top, WIDTH, bottom), shade)
    _fill(canvas, _disc(340, 52, 30), (250, 200, 40))


def _draw_box(canvas: np.ndarray, x0: int, colour: tuple[int, int, int]) -> None:
    _fill(canvas, _rect(x0, 110, x0 + 120, 230), (30, 30, 40))
    _fill(canvas, _rect(x0 + 6, 116, x0 + 114, 224), colour)
    _fill(canvas, _rect(x0 + 30, 140, x0 + 90, 200), (245, 245, 245))
    _fill(canvas, _rect(x0 + 36, 146, x0 + 84, 194), (220, 60, 60))
    _fill(canvas, _disc(x0 + 60, 170, 14), (60, 180, 90))


def _draw_arrow(canvas: np.ndarray) -> None:
    _fill(canvas, _rect(168, 162, 222, 178), (250, 250, 250))
    y, x = _grid()
    head = (x >= 222) & (x < 246) & (np.abs(y - 170) <= (246 - x))
    _fill(canvas, head, (250, 250, 250))


def _draw_text(canvas: np.ndarray, text: str, x0: int, y0: int, scale: int) -> None:
    for index, char in enumerate(text):
        for row, line in enumerate(_GLYPHS[char]):
            for col, pixel in enumerate(line):
                if pixel == "#":
                    x = x0 + (index * 6 + col) * scale
                    y = y0 + row * scale
                    canvas[y:y + scale, x:x + scale, :3] = (255, 255, 255)


def draw_sample() -> np.ndarray:
    """The sample picture as an opaque RGBA uint8 array of shape (300, 400, 4)."""
    canvas = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    canvas[..., 3] = 255
    _draw_sky(canvas)
    _draw_box(canvas, 30, (70, 110, 200))
    _draw_box(canvas, 250, (200, 140, 60))
    _draw_arrow(canvas)
    _draw_text(canvas, "shmimage", 32, 30, 4)
    _fill(canvas, _rect(0, 260, WIDTH, HEIGHT), (50, 120, 60))
    return canvas


def load_sample() -> np.ndarray:
    """The bundled sample.png decoded as RGBA uint8."""
    from PIL import Image

    with Image.open(SAMPLE_PATH) as image:
        pixels: np.ndarray = np.asarray(image.convert("RGBA")).copy()
        return pixels


def write_sample(path: Path = SAMPLE_PATH) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(draw_sample()).save(path, optimize=True)
    return path


if __name__ == "__main__":
    print(write_sample(Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE_PATH))
