"""`shmimage demo` without a display, and the bundled sample image it shows."""
from __future__ import annotations

import numpy as np
from PIL import Image
from shmimage.demo import count_differing
from shmimage.sample import SAMPLE_PATH, draw_sample, load_sample, write_sample
from workers_cli import cli_env, one_line_error, run_cli


def our_demo_segments() -> set[str]:
    from shmimage.memory import list_segments

    return {s.native_key for s in list_segments() if (s.key or "").startswith("shmimage-demo-")}


def test_the_bundled_sample_is_what_the_project_draws():
    assert SAMPLE_PATH.stat().st_size < 16_384
    assert np.array_equal(load_sample(), draw_sample())


def test_write_sample_redraws_the_same_pixels(tmp_path):
    path = write_sample(tmp_path / "redrawn.png")
    with Image.open(path) as image:
        assert image.mode == "RGBA" and image.size == (400, 300)
        assert np.array_equal(np.asarray(image), draw_sample())


def test_headless_demo_crosses_processes_and_checks_every_pixel(tmp_path):
    out = tmp_path / "read-back.png"
    before = our_demo_segments()
    result = run_cli("demo", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "all 120,000 pixels match" in result.stdout
    assert "400x300" in result.stdout and "memcpy" in result.stdout
    assert str(out) in result.stdout
    with Image.open(out) as image:
        assert np.array_equal(np.asarray(image.convert("RGBA")), load_sample())
    assert our_demo_segments() == before


def test_headless_demo_default_output_goes_to_the_temp_dir(tmp_path):
    result = run_cli("demo", env=cli_env(TMPDIR=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "shmimage-demo.png"
    assert str(written) in result.stdout and written.is_file()


def test_headless_flag_wins_over_a_display(tmp_path):
    # The display named here does not exist: --headless must not even try it.
    result = run_cli("demo", "--headless", "-o", str(tmp_path / "x.png"),
                     env=cli_env(DISPLAY=":4242"))
    assert result.returncode == 0, result.stderr
    assert "pixels match" in result.stdout


def test_unreachable_display_falls_back_to_headless(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "x.png"), env=cli_env(DISPLAY=":4242"))
    assert result.returncode == 0, result.stderr
    assert "pixels match" in result.stdout
    assert "headless" in result.stderr


def test_unwritable_output_is_one_line_exit_1(tmp_path):
    result = run_cli("demo", "-o", str(tmp_path / "no" / "such" / "dir" / "x.png"))
    assert result.returncode == 1
    assert one_line_error(result).startswith("shmimage demo: error: ")


def test_count_differing_counts_pixels_not_channels():
    image = draw_sample()
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    changed[5, 5, :] = 0
    assert count_differing(image, image) == 0
    assert count_differing(changed, image) == 2
    assert count_differing(image[:10], image) == 300 * 400
