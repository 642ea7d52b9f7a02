"""shmimage.net over loopback TCP: a real server and relay in child processes."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

from shmimage import SharedImage, SharedMemory
from workers_net import Driven, indexed, relay_child, serve_child, wait_for_value

LOOPBACK = "tcp://127.0.0.1:*"


def start_pair(procs, src, dst, *, lossless=False, server=None, relay=None):
    server_child = Driven(procs, serve_child, src, LOOPBACK,
                          {"lossless": lossless, **(server or {})})
    relay_proc = Driven(procs, relay_child, server_child.first, dst,
                        {"lossless": lossless, **(relay or {})})
    relay_proc.wait_for(lambda facts: facts["connected"])
    return server_child, relay_proc


def test_lossless_every_frame_in_order(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(0))
        server, relay = start_pair(procs, src, dst, lossless=True)
        wait_for_value(reader, 0)
        for index in range(1, 60):  # one at a time: the relay's store keeps the latest only
            writer.publish(indexed(index))
            frame = wait_for_value(reader, index)
            assert frame.shape == (24, 32) and frame.dtype == np.uint32
            assert (frame == index).all()
        facts = relay.stop()
        assert facts["frames"] == 60 and facts["dropped"] == 0 and facts["rejected"] == 0
        assert facts["last_generation"] == writer.info().generation
        assert server.stop()["frames"] == 60


def test_lossless_burst_faster_than_the_link_loses_nothing(procs, unique_key):
    # A burst faster than the link: the server's lossless subscription holds the
    # writer back instead of missing frames (tests/test_net_lossless.py checks each).
    src, dst = unique_key("src"), unique_key("dst")
    shape = (480, 640, 3)
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(np.zeros(shape, np.uint8))
        server, relay = start_pair(procs, src, dst, lossless=True)
        relay.wait_for(lambda facts: facts["last_generation"] == 1)
        for index in range(2, 201):
            writer.publish(np.full(shape, index % 256, np.uint8))
        relay.wait_for(lambda facts: facts["last_generation"] == 200)
        frame = reader.read()
        assert (frame == 200 % 256).all()
        facts = relay.stop()
        server.stop()
        assert facts["frames"] == 200 and facts["dropped"] == 0
        assert facts["rejected"] == 0


def test_lossy_shows_the_newest_frame(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    shape = (720, 1280, 3)
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(np.zeros(shape, np.uint8))
        server, relay = start_pair(procs, src, dst)
        wait_for_value(reader, 0)
        for index in range(1, 151):
            writer.publish(np.full(shape, index % 256, np.uint8))
        frame = wait_for_value(reader, 150)
        assert (frame == 150).all()
        facts = relay.wait_for(lambda f: f["last_generation"] == 151)
        assert facts["frames"] + facts["dropped"] == 151
        server_facts = server.ask()
        relay.stop()
        server.stop()
        assert server_facts["frames"] == facts["frames"]


@pytest.mark.parametrize("compress", ["lz4", "zstd", "png"])
def test_compressed_frames_arrive_exact(procs, unique_key, compress):
    pytest.importorskip({"lz4": "lz4", "zstd": "zstandard", "png": "PIL"}[compress])
    src, dst = unique_key("src"), unique_key("dst")
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 4, (120, 160, 3), dtype=np.uint8) for _ in range(5)]
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(frames[0])
        server, relay = start_pair(procs, src, dst, lossless=True,
                                   server={"compress": compress})
        for index, pixels in enumerate(frames, start=1):
            if index > 1:
                writer.publish(pixels)
            relay.wait_for(lambda facts, g=index: facts["last_generation"] == g)
            assert np.array_equal(reader.read(), pixels)
        facts = relay.stop()
        sent = server.stop()
        assert facts["rejected"] == 0
        assert sent["bytes"] < sum(f.nbytes for f in frames)  # it was compressed


def test_jpeg_quality(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    pixels = np.tile(np.arange(160, dtype=np.uint8), (120, 1))[..., None].repeat(3, axis=2)
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(pixels)
        server, relay = start_pair(procs, src, dst, server={"compress": "jpeg:80"})
        relay.wait_for(lambda facts: facts["last_generation"] == 1)
        got = reader.read()
        assert got.shape == pixels.shape and got.dtype == np.uint8
        assert np.abs(got.astype(int) - pixels).mean() < 4  # lossy, but the same picture
        relay.stop()
        server.stop()


def test_dtypes_and_shapes_cross(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    cases = [np.arange(12, dtype=np.float64).reshape(3, 4) / 7,
             np.array([[True, False], [False, True]]),
             np.arange(3 * 4 * 2, dtype=np.int16).reshape(3, 4, 2) - 20,
             np.arange(70000, dtype=np.uint16).reshape(350, 200)]
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(cases[0])
        server, relay = start_pair(procs, src, dst, lossless=True)
        for generation, pixels in enumerate(cases, start=1):
            if generation > 1:
                writer.publish(pixels)
            relay.wait_for(lambda facts, g=generation: facts["last_generation"] == g)
            got = reader.read()
            assert got.dtype == pixels.dtype and np.array_equal(got, pixels)
        relay.stop()
        server.stop()


def test_relay_defaults_to_the_served_key(unique_key):
    # (Across one host that would write back into the source: the namespace test runs it.)
    from shmimage.net import Relay

    key = unique_key("served")
    relay = Relay("tcp://127.0.0.1:9")
    relay._welcome({"mode": "lossy", "key": key})
    assert relay.key == key and relay.connected.is_set()
    notes = []
    asked = Relay("tcp://127.0.0.1:9", key, lossless=True, on_notice=notes.append)
    asked._welcome({"mode": "lossy", "key": key})
    asked._welcome({"mode": "lossy", "key": key})  # said once, not on every reconnect
    assert asked.mode == "lossy" and len(notes) == 1 and "--lossless" in notes[0]
    hostile = Relay("tcp://127.0.0.1:9")
    hostile._welcome({"mode": "lossy", "key": "x" * 300})
    assert hostile.key is None and hostile.stats.rejected == 1


def test_clean_stop_leaves_nothing(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    native = "/dev/shm/" + SharedMemory(dst).native_key.lstrip("/")
    with SharedImage(src) as writer:
        writer.publish(indexed(1))
        server, relay = start_pair(procs, src, dst)
        relay.wait_for(lambda facts: facts["frames"] >= 1)
        assert os.path.exists(native)
        relay_facts, server_facts = relay.stop(), server.stop()
    assert not relay_facts["alive"] and not server_facts["alive"]
    assert relay.proc.exitcode == 0 and server.proc.exitcode == 0
    deadline = time.monotonic() + 5
    while os.path.exists(native) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(native)


def test_server_starts_before_the_producer_and_forgets_a_relay_that_says_bye(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    server = Driven(procs, serve_child, src, LOOPBACK, {})
    relay = Driven(procs, relay_child, server.first, dst, {})
    relay.wait_for(lambda facts: facts["connected"])
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(4))
        wait_for_value(reader, 4)
        writer.publish(indexed(5))
        wait_for_value(reader, 5)
        server.wait_for(lambda facts: facts["relays"] == 1)
        relay.stop()
        # Sooner than the 5 s a silent relay gets: it said bye.
        server.wait_for(lambda facts: facts["relays"] == 0, timeout=4.0)
        server.stop()


def test_png_keeps_16_bit_grey_and_falls_back_to_raw_for_what_png_cannot_hold(
        procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    grey16 = (np.arange(120 * 160, dtype=np.uint32) * 3 % 65536).astype(np.uint16)
    cases = [grey16.reshape(120, 160), np.linspace(0, 1, 60, dtype=np.float64).reshape(6, 10)]
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(cases[0])
        server, relay = start_pair(procs, src, dst, lossless=True, server={"compress": "png"})
        for generation, pixels in enumerate(cases, start=1):
            if generation > 1:
                writer.publish(pixels)
            relay.wait_for(lambda facts, g=generation: facts["last_generation"] == g)
            got = reader.read()
            assert got.dtype == pixels.dtype and np.array_equal(got, pixels)
        assert relay.stop()["rejected"] == 0
        server.stop()


def test_ipv6_loopback(procs, unique_key):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    src, dst = unique_key("src"), unique_key("dst")
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(6))
        server = Driven(procs, serve_child, src, "tcp://[::1]:*", {})
        relay = Driven(procs, relay_child, server.first, dst, {})
        wait_for_value(reader, 6)
        relay.stop()
        server.stop()


def test_a_frame_that_cannot_be_pinned_now_is_retried_not_fatal(unique_key, monkeypatch):
    from shmimage.net._source import FollowLatest, LatestFrames

    key = unique_key("src")
    with SharedImage(key) as writer:
        writer.publish(indexed(1))
        frames = LatestFrames(key)
        source = FollowLatest(frames, None)

        def busy():
            raise TimeoutError("could not pin the latest frame")

        with monkeypatch.context() as patch:
            patch.setattr(frames.image, "view", busy)
            assert source.take() is None
        assert "could not pin" in frames.last_error
        gap, frame = source.take()
        assert gap == 0 and frame.generation == 1 and (frame.pixels == 1).all()
        frame.release()
        frames.close()
