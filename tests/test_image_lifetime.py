"""Lifetime: store options, rebuilds, shrinking, persistent on an existing
segment, status() and `shmimage info`."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest
from shmimage import SharedImage, SharedMemory
from workers_frames import pin_and_wait
from workers_image import WAIT, frame_generation, gen_frame, shm_path

ctx = multiprocessing.get_context("spawn")


def size_of(image: SharedImage) -> int:
    return os.stat(shm_path(image.native_key)).st_size


def test_store_options_default_to_the_existing_store(unique_key) -> None:
    key = unique_key()
    with SharedImage(key, slots=4, max_slots=8, history=3) as writer:
        writer.publish(gen_frame((8, 8), 1))
        with SharedImage(key) as reader:
            assert reader.status()["options"] == writer.status()["options"]
            o = reader.status()["options"]
            assert (o["slots"], o["max_slots"], o["history"]) == (4, 8, 3)
    with SharedImage(unique_key()) as fresh:
        fresh.publish(gen_frame((8, 8), 1))
        o = fresh.status()["options"]
        assert (o["capacity"], o["slots"], o["max_slots"], o["history"]) == (0, 3, 16, 1)


def test_an_explicit_different_option_rebuilds_carrying_the_kept_frames(unique_key) -> None:
    key = unique_key()
    with SharedImage(key, history=3) as writer:
        for generation in range(1, 6):
            writer.publish(gen_frame((8, 8), generation))
        name = writer.native_key
        with SharedImage(key, history=2, max_slots=5) as other:
            status = other.status()
            assert status["options"]["history"] == 2 and status["options"]["max_slots"] == 5
            assert other.native_key == name
            assert frame_generation(other.read()) == 5 and other.info().generation == 5
        assert frame_generation(writer.read()) == 5  # the writer follows the rebuild
        assert writer.publish(gen_frame((8, 8), 6)) == 6
    with pytest.raises(ValueError):
        SharedImage(unique_key(), slots=1)


def test_the_store_shrinks_after_16_small_frames_never_below_capacity(unique_key) -> None:
    with SharedImage(unique_key(), capacity=1 << 20) as image:
        image.publish(np.zeros((2000, 2000, 4), np.uint8))  # 16 MB: grows
        big = size_of(image)
        assert image.status()["options"]["slot_capacity"] >= 16_000_000
        for generation in range(16):
            image.publish(gen_frame((16, 16), generation))
            assert size_of(image) == big
        image.publish(gen_frame((16, 16), 99))
        assert image.status()["options"]["slot_capacity"] == 1 << 20  # not 1 KiB
        assert size_of(image) < big // 4
        assert frame_generation(image.read()) == 99
        assert image.status()["options"]["capacity"] == 1 << 20


def test_persistent_is_honoured_on_an_existing_segment(unique_key) -> None:
    key = unique_key()
    with SharedImage(key) as writer:
        writer.publish(gen_frame((8, 8), 1))
        with SharedImage(key, persistent=True) as keeper:
            assert keeper.status()["persistent"] is True
            path = shm_path(keeper.native_key)
    try:
        assert os.path.exists(path)  # outlived every process
        with SharedImage(key) as again:
            assert frame_generation(again.read()) == 1
    finally:
        SharedMemory.remove(key)
    assert not os.path.exists(path)


def test_status_and_shmimage_info_list_pins_per_process(unique_key, procs) -> None:
    key = unique_key()
    with SharedImage(key) as image:
        image.publish(gen_frame((8, 8), 1))
        parent_end, child_end = ctx.Pipe()
        child = procs.start(pin_and_wait, key, 2, child_end, 120.0)
        for generation in (1, 2):
            parent_end.send("pin")
            assert parent_end.poll(WAIT) and parent_end.recv() == generation
            image.publish(gen_frame((8, 8), generation + 1))
        with image.view() as mine:
            pass
        status = image.status()
        pins = sorted((p["pid"], p["pins"]) for p in status["pins"])
        assert pins == sorted([(child.pid, 2), (os.getpid(), 1)])
        assert status["subscribers"] == [] and status["slots_in_use"] >= 4
        out = subprocess.run([sys.executable, "-m", "shmimage", "info", key], capture_output=True,
                             text=True, timeout=WAIT, check=False)
        assert out.returncode == 0, out.stderr
        assert f"pid {child.pid}: 2" in out.stdout and f"pid {os.getpid()}: 1" in out.stdout
        assert "max_slots 16" in out.stdout
        out = subprocess.run([sys.executable, "-m", "shmimage", "info", key, "--json"],
                             capture_output=True, text=True, timeout=WAIT, check=False)
        store = json.loads(out.stdout)["store"]
        assert {p["pid"] for p in store["pins"]} == {child.pid, os.getpid()}
        del mine
        child.kill()
        child.join(WAIT)
        assert image.status()["pins"] == []
