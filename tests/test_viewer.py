"""The Tk viewer: its pixel helpers, and real windows on Xvfb driven with xdotool."""
from __future__ import annotations

import json
import multiprocessing
import re
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import workers_viewer
from shmimage import SharedImage
from shmimage.render import fit_size, to_ppm, to_rgba8
from shmimage.sample import SAMPLE_PATH
from shmimage.viewer import (
    ATTACH_FAILED_TEXT,
    DISPLAY_TEXT,
    INTRO_TEXT,
    LIVE_TEXT,
    LOAD_TEXT,
    NOT_IMAGE_TEXT,
    QT_TEXT,
    SELECT_TEXT,
    TITLE,
    image_filetypes,
)
from workers_cli import (
    Events,
    cli_env,
    find_image,
    missing_x_tools,
    one_line_error,
    press,
    run_cli,
    sample_rgb,
    screenshot,
    segment_exists,
    solid,
    start_cli,
    start_xvfb,
    stop,
    type_text,
    wait_for_image,
    wait_for_windows,
    windows_named,
    x_run,
)

LEFT, RIGHT = "+40+60", "+500+60"


# ---- pixel helpers (no display needed) -------------------------------------------------

@pytest.mark.parametrize("frame, expected", [
    (np.full((2, 3), 7, np.uint8), [7, 7, 7, 255]),
    (np.full((2, 3, 1), 9, np.uint8), [9, 9, 9, 255]),
    (np.full((2, 3, 3), (1, 2, 3), np.uint8), [1, 2, 3, 255]),
    (np.full((2, 3, 4), (1, 2, 3, 4), np.uint8), [1, 2, 3, 4]),
    (np.full((2, 3), 0x1234, np.uint16), [0x12, 0x12, 0x12, 255]),  # one value: dtype's range
    (np.full((2, 3, 3), (0.0, 0.5, 1.0), np.float32), [0, 128, 255, 255]),
    (np.full((2, 3, 3), (0.0, 0.5, 2.0), np.float32), [0, 64, 255, 255]),  # stretched
    (np.full((2, 3), True), [255, 255, 255, 255]),
    (np.full((2, 3, 2), (40, 200), np.uint8), [40, 40, 40, 200]),
    (np.full((2, 3, 4), (0, 1000, 2000, 65535), np.uint16), [0, 128, 255, 255]),
    (np.full((5, 2, 3, 3), 9, np.uint8), [9, 9, 9, 255]),  # a batch shows its first frame
    (np.full((2, 3, 6), (1, 2, 3, 4, 5, 6), np.uint8), [1, 2, 3, 255]),
])
def test_to_rgba8_handles_every_frame_kind(frame, expected):
    rgba = to_rgba8(frame)
    assert rgba.shape == (2, 3, 4) and rgba.dtype == np.uint8
    assert rgba[1, 2].tolist() == expected


def test_to_rgba8_refuses_what_it_cannot_show():
    from shmimage import InvalidImageError

    with pytest.raises(InvalidImageError):
        to_rgba8(np.zeros((2, 3), np.complex64))
    with pytest.raises(InvalidImageError):
        to_rgba8(np.zeros(5, np.uint8))


def test_fit_size_keeps_aspect_and_fills_the_box():
    assert fit_size(400, 300, (400, 300)) == (400, 300)
    assert fit_size(800, 300, (400, 300)) == (400, 150)
    assert fit_size(10, 20, (400, 300)) == (150, 300)
    assert fit_size(5000, 1, (400, 300)) == (400, 1)


def test_to_ppm_is_a_p6_image_of_the_fitted_size():
    data, size = to_ppm(np.zeros((600, 800, 4), np.uint8), (400, 300))
    assert size == (400, 300)
    assert data.startswith(b"P6 400 300 255\n")
    assert len(data) == len(b"P6 400 300 255\n") + 400 * 300 * 3


def test_file_dialog_offers_what_pillow_reads():
    (name, patterns), (other, everything) = image_filetypes()
    assert (name, other) == ("Images", "All files")
    for ext in ("*.png", "*.xpm", "*.jpg", "*.bmp", "*.gif", "*.tif"):
        assert ext in patterns.split()
    assert everything == "*"


# ---- real windows ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    missing = missing_x_tools()
    if missing:
        pytest.skip(f"driving real windows needs {', '.join(missing)} "
                    "(Debian: apt-get install xvfb xdotool imagemagick)")
    pytest.importorskip("tkinter", reason="this Python has no Tk (Debian: python3-tk)")
    xvfb, name = start_xvfb()
    try:
        yield name
    finally:
        stop(xvfb)


class Viewer:
    """One `shmimage viewer --trace` process and its X window."""

    def __init__(self, display: str, key: str, geometry: str, *extra: str) -> None:
        before = set(windows_named(display, TITLE))
        self.display = display
        self.proc = start_cli("viewer", "--key", key, "--geometry", geometry, "--trace",
                              *extra, env=cli_env(DISPLAY=display))
        try:
            self.events = Events(self.proc.stdout)
            self.ready = self.events.event("ready")
            found = wait_for_windows(display, TITLE, len(before) + 1)
            (self.window,) = set(found) - before
        except BaseException:
            stop(self.proc, signal.SIGKILL)
            raise

    def keys(self, *keys: str) -> None:
        press(self.display, self.window, *keys)

    def close(self) -> int:
        return stop(self.proc, signal.SIGTERM)


@pytest.fixture
def viewers(display: str) -> Iterator[list[Viewer]]:
    opened: list[Viewer] = []
    try:
        yield opened
    finally:
        for viewer in opened:
            viewer.close()


def choose_file(display: str, path: str) -> None:
    """Type a path into Tk's open-file dialog, as a person would, and confirm."""
    (dialog,) = wait_for_windows(display, SELECT_TEXT, 1)
    type_text(display, dialog, path)
    press(display, dialog, "Return")


def test_the_example_two_viewers_by_keyboard(display, viewers, unique_key):
    key = unique_key("viewer")
    first = Viewer(display, key, LEFT)
    viewers.append(first)
    second = Viewer(display, key, RIGHT)
    viewers.append(second)
    for viewer in (first, second):
        assert viewer.ready["title"] == TITLE
        assert viewer.ready["buttons"] == [LOAD_TEXT, DISPLAY_TEXT]
        assert viewer.ready["label"] == INTRO_TEXT
        assert viewer.ready["options"] == [LIVE_TEXT, QT_TEXT]
        assert x_run(display, "xdotool", "getwindowname", viewer.window).strip() == TITLE

    first.keys("space")  # the top button has the focus from the start
    first.events.event("status", text=SELECT_TEXT)
    choose_file(display, str(SAMPLE_PATH))
    loaded = first.events.event("image", source="file")
    assert (loaded["width"], loaded["height"]) == (400, 300)

    second.keys("Tab")
    second.events.event("focus", widget=DISPLAY_TEXT)
    second.keys("space")
    shown = second.events.event("image", source="memory")
    assert shown["shown"] == [400, 300]

    places = wait_for_image(display, sample_rgb(), 2)
    assert len(places) == 2, "the sample should be on screen in both windows"
    assert sorted(x < 500 for _, x in places) == [False, True]

    assert first.close() == 0 and second.close() == 0
    assert not segment_exists(key)


def test_error_texts_and_tab_order(display, viewers, unique_key, tmp_path):
    key = unique_key("viewer-err")
    viewer = Viewer(display, key, LEFT)
    viewers.append(viewer)
    viewer.keys("Tab")
    viewer.events.event("focus", widget=DISPLAY_TEXT)
    viewer.keys("Tab")
    viewer.events.event("focus", widget=LIVE_TEXT)
    viewer.keys("shift+Tab")
    viewer.events.event("focus", widget=DISPLAY_TEXT)
    viewer.keys("space")
    viewer.events.event("status", text=ATTACH_FAILED_TEXT)

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("plain text, not pixels")
    viewer.keys("shift+Tab")
    viewer.events.event("focus", widget=LOAD_TEXT)
    viewer.keys("Return")  # Return works as well as space
    viewer.events.event("status", text=SELECT_TEXT)
    choose_file(display, str(not_an_image))
    viewer.events.event("status", text=NOT_IMAGE_TEXT)
    assert not segment_exists(key)
    assert viewer.close() == 0


def test_live_mode_redraws_every_frame_and_stays_responsive(display, viewers, unique_key):
    key = unique_key("viewer-live")
    viewer = Viewer(display, key, LEFT)
    viewers.append(viewer)
    viewer.keys("Tab", "Tab", "space")
    viewer.events.event("live", on=True)
    with SharedImage(key) as image:
        for colour in [(200, 30, 40), (20, 160, 60), (30, 40, 210)]:
            generation = image.publish(solid(colour))
            viewer.events.event("image", source="live", generation=generation)
            assert find_image(screenshot(display), solid(colour)[..., :3]), colour
        viewer.keys("shift+Tab")  # the window still answers the keyboard while live
        viewer.events.event("focus", widget=DISPLAY_TEXT)
    assert viewer.close() == 0
    assert not segment_exists(key)


def _live_frames(events: Events) -> list[dict[str, Any]]:
    frames = [json.loads(line) for line in events.seen if '"source": "live"' in line]
    return [e for e in frames if e.get("event") == "image"]


def test_live_mode_follows_a_producer_process_lossily(display, viewers, unique_key, procs):
    """A producer in its own process runs flat out with history 8: the viewer shows
    the newest frame (not one 8 behind), never slows the producer, and every
    generation is either drawn or counted as dropped."""
    key = unique_key("viewer-producer")
    viewer = Viewer(display, key, LEFT, "--live")
    viewers.append(viewer)
    viewer.events.event("status", text=ATTACH_FAILED_TEXT)
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    last = (255, 0, 255)
    procs.start(workers_viewer.produce, key, 3000, 8, last, there)
    assert here.poll(workers_viewer.WAIT)
    status, final = here.recv()
    assert status == "ok", final
    viewer.events.event("image", source="live", generation=final)
    assert find_image(screenshot(display), solid(last)[..., :3])
    text = viewer.events.event("info")["text"]
    assert f"generation {final}" in text and " fps" in text, text
    dropped = int(re.search(r"(\d+) dropped", text).group(1))
    shown = [e["generation"] for e in _live_frames(viewer.events)]
    assert shown == sorted(shown), "frames are drawn in generation order"
    generations = sorted(set(shown))
    assert generations[-1] == final
    # Live from before the first frame: each of generations 1..final was drawn or dropped.
    assert len(generations) + dropped == final, (len(generations), dropped, generations[:5])
    assert dropped > 0, "a producer flat out outpaces a window"
    here.send("go")
    assert viewer.close() == 0


def test_live_mode_waits_for_a_publisher_to_appear(display, viewers, unique_key):
    key = unique_key("viewer-late")
    viewer = Viewer(display, key, LEFT, "--live")
    viewers.append(viewer)
    viewer.events.event("status", text=ATTACH_FAILED_TEXT)
    with SharedImage(key) as image:
        generation = image.publish(solid((250, 120, 0)))
        viewer.events.event("image", source="live", generation=generation)
    assert viewer.close() == 0
    assert not segment_exists(key)


def test_qt_mode_exchanges_images_with_qts_format(display, viewers, unique_key, tmp_path):
    qt = pytest.importorskip("shmimage.qt", reason="the Qt format module is not built")
    key = unique_key("viewer-qt")
    try:
        publisher = Viewer(display, key, LEFT, "--qt", "--load", str(SAMPLE_PATH))
        viewers.append(publisher)
        publisher.events.event("image", source="file")
        got = run_cli("get", "--key", key, "--qt", "-o", str(tmp_path / "from-viewer.png"))
        assert got.returncode == 0, got.stderr

        reader = Viewer(display, key, RIGHT)  # switched to Qt's format by keyboard
        viewers.append(reader)
        reader.keys("Tab", "Tab", "Tab")
        reader.events.event("focus", widget=QT_TEXT)
        reader.keys("space")
        reader.events.event("mode", qt=True)
        reader.keys("shift+Tab")  # "Live" is disabled in Qt's format, so Tab skips it
        reader.events.event("focus", widget=DISPLAY_TEXT)
        reader.keys("space")
        reader.events.event("image", source="memory")
        assert len(wait_for_image(display, sample_rgb(), 2)) == 2
        assert publisher.close() == 0 and reader.close() == 0
    finally:
        leftover = qt.QtSharedImage.remove(key)
    assert not leftover


def window_at(display: str, windows: list[str], x: int) -> str:
    for window in windows:
        if f"Position: {x}," in x_run(display, "xdotool", "getwindowgeometry", window):
            return window
    raise AssertionError(f"no window at x={x}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_opens_two_viewers_with_the_sample_loaded(display, unique_key, sig):
    key = unique_key("demo")
    before = set(windows_named(display, TITLE))
    demo = start_cli("demo", "--key", key, "--trace", env=cli_env(DISPLAY=display))
    try:
        events = Events(demo.stdout)
        events.event("image", source="file")
        windows = sorted(set(wait_for_windows(display, TITLE, len(before) + 2)) - before)
        places = wait_for_image(display, sample_rgb(), 1)
        assert len(places) == 1 and places[0][1] < 500
        right = window_at(display, windows, 500)
        press(display, right, "Tab", "space")
        events.event("image", source="memory")
        assert len(wait_for_image(display, sample_rgb(), 2)) == 2
    finally:
        code = stop(demo, sig)
    assert code == 0
    assert set(windows_named(display, TITLE)) <= before, "the demo's viewers must close with it"
    assert not segment_exists(key)


def test_viewer_without_a_display_is_one_line(unique_key):
    result = run_cli("viewer", "--key", unique_key("nodisplay"))
    assert result.returncode == 1
    assert "DISPLAY" in one_line_error(result)


# ---- any frame: 16-bit normalised, 4K scaled to fit, a status line -----------------------

def bands(values: list[int], dtype: type, shape: tuple[int, int] = (300, 400)) -> np.ndarray:
    """Vertical bands of equal width, one per value."""
    frame = np.empty(shape, dtype)
    width = shape[1] // len(values)
    for i, value in enumerate(values):
        frame[:, i * width:(i + 1) * width] = value
    return frame


def test_a_16_bit_frame_is_shown_normalised_with_a_status_line(display, viewers, unique_key):
    key = unique_key("viewer-16")
    with SharedImage(key) as image:
        image.publish(bands([0, 1000, 2000, 3000], np.uint16))
        viewer = Viewer(display, key, LEFT, "--live")
        viewers.append(viewer)
        shown = viewer.events.event("image", source="live", generation=1)
        assert shown["dtype"] == "uint16" and shown["shown"] == [400, 300]
        status = viewer.events.event("info")["text"]
        assert key[:20] in status and "generation 1" in status and "400x300 uint16" in status
        # 0..3000 stretched to 0..255: four grey bands, pixel for pixel on screen.
        grey = bands([0, 85, 170, 255], np.uint8)
        assert len(wait_for_image(display, np.repeat(grey[..., None], 3, axis=2), 1)) == 1
        for generation in (2, 3, 4):
            image.publish(bands([0, 1000, 2000, 3000], np.uint16))
            viewer.events.event("image", source="live", generation=generation)
        status = viewer.events.event("info")["text"]
        assert "generation 4" in status and " fps" in status
    assert viewer.close() == 0


def colour_box(screen: np.ndarray, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels of exactly ``colour`` on the screen."""
    ys, xs = np.nonzero(np.all(screen == colour, axis=-1))
    assert ys.size, f"{colour} is nowhere on screen"
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def test_a_4k_frame_is_scaled_to_fit_a_small_window(display, viewers, unique_key):
    key = unique_key("viewer-4k")
    red, green, blue, white = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
    frame = np.empty((2160, 3840, 3), np.uint8)
    frame[:1080, :1920], frame[:1080, 1920:] = red, green
    frame[1080:, :1920], frame[1080:, 1920:] = blue, white
    with SharedImage(key) as image:
        image.publish(frame)
        viewer = Viewer(display, key, LEFT, "--live")
        viewers.append(viewer)
        shown = viewer.events.event("image", source="live", generation=1)
        assert (shown["width"], shown["height"]) == (3840, 2160)
        assert shown["shown"] == [400, 225]
        assert "3840x2160x3 uint8" in viewer.events.event("info")["text"]
        geometry = x_run(display, "xdotool", "getwindowgeometry", viewer.window)
        width, height = (int(n) for n in geometry.split("Geometry:")[1].split()[0].split("x"))
        assert width < 700 and height < 700, geometry
        screen = screenshot(display)
        top, left, bottom, right = colour_box(screen, red)
        # The whole frame, scaled by 400/3840: each quadrant about 200x112 (edges blur).
        assert 195 <= right - left <= 201 and 108 <= bottom - top <= 113
        assert np.all(screen[top + 2:bottom - 2, left + 2:right - 2] == red)
        g_top, g_left, _, g_right = colour_box(screen, green)
        assert abs(g_top - top) <= 1 and 0 <= g_left - right <= 3 and g_right - left <= 401
        b_top, b_left, _, _ = colour_box(screen, blue)
        assert abs(b_left - left) <= 1 and 0 <= b_top - bottom <= 3
    assert viewer.close() == 0


def test_the_frame_follows_the_window_when_it_is_resized(display, viewers, unique_key):
    key = unique_key("viewer-resize")
    with SharedImage(key) as image:
        image.publish(solid((10, 120, 230), (600, 800)))
        viewer = Viewer(display, key, LEFT, "--live")
        viewers.append(viewer)
        assert viewer.events.event("image", source="live")["shown"] == [400, 300]
        x_run(display, "xdotool", "windowsize", "--sync", viewer.window, "900", "800")

        def grown(line: str) -> bool:
            return '"image"' in line and '"shown": [400, 300]' not in line

        event = json.loads(viewer.events.expect(grown))
        width, height = event["shown"]
        assert width > 600 and abs(width / height - 4 / 3) < 0.02
        assert find_image(screenshot(display), solid((10, 120, 230), (height, width))[..., :3])
    assert viewer.close() == 0
