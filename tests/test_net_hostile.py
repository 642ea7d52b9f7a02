"""Hostile peers: a raw pyzmq socket sends what no honest peer would.

Every bad message is counted as rejected and dropped; nothing it claims is
allocated; memory does not grow; the side under attack keeps serving.
"""
from __future__ import annotations

import io
import json
import math
import time

import numpy as np
import pytest

zmq = pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

from shmimage import SharedImage
from shmimage.net.wire import FrameHeader, encode_frame_header
from workers_net import Driven, indexed, relay_child, serve_child, wait_for_value

ROUNDS = 150
RSS_SLACK_KIB = 24 * 1024


def control(**fields):
    return json.dumps(fields).encode()


BAD_CONTROL = [
    b"", b"\xff\xfe\x00", b"[1, 2]", b"null", b'"text"', b"[" * 2000,
    b'{"v": ' + b"9" * 3000 + b', "op": "ping"}',
    control(v=2, op="ping"), control(v="1", op="ping"), control(v=True, op="ping"),
    control(v=1, op="launch"), control(v=1, op="frame"),
    control(v=1, op="credit", n=-5), control(v=1, op="credit", n="x"),
    control(v=1, op="credit", n=10**9),
    control(v=1, op="hello", mode="everything", credit=2),
    control(v=1, op="hello", mode="lossy", credit=100000),
    control(v=1, op="hello", mode="lossless", credit=2, after=-1),
]


def test_server_rejects_hostile_relays_and_keeps_serving(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(1))
        server = Driven(procs, serve_child, src, "tcp://127.0.0.1:*", {})
        context = zmq.Context()
        raw = context.socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(server.first)
        try:
            expected = 0
            for round_ in range(ROUNDS):
                for message in BAD_CONTROL:
                    raw.send(message)
                raw.send_multipart([control(v=1, op="ping"), b"x", b"y"])  # too many parts
                expected += len(BAD_CONTROL) + 1
                if round_ == 10:
                    facts = server.wait_for(lambda f, n=expected: f["rejected"] == n)
                    baseline = facts["rss_kib"]
            facts = server.wait_for(lambda f: f["rejected"] == expected)
            assert facts["rss_kib"] - baseline < RSS_SLACK_KIB, (baseline, facts)
            raw.send(b"{" * 8192)  # over the server's message size: ZeroMQ drops the peer
            relay = Driven(procs, relay_child, server.first, dst, {})
            wait_for_value(reader, 1)
            writer.publish(indexed(2))
            wait_for_value(reader, 2)
            relay.stop()
            assert server.stop()["alive"] is False
        finally:
            raw.close(0)
            context.term()


def frame_header(shape=(4, 5), dtype="|u1", enc="none", size=None, gen=1, **extra):
    if size is None:
        honest = not isinstance(shape, str) and all(isinstance(n, int) for n in shape)
        size = math.prod(shape) if honest else 20
    fields = {"v": 1, "op": "frame", "gen": gen, "ts": 0, "shape": list(shape), "dtype": dtype,
              "enc": enc, "size": size, "gap": 0, **extra}
    return json.dumps(fields).encode()


def png_bytes(shape):
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.zeros(shape, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def bad_frames():
    twenty = b"\x07" * 20
    return [
        [b"not json", twenty],
        [frame_header()[:-1], twenty],
        [b'{"v": 9, "op": "frame"}', twenty],
        [frame_header(dtype="<c16", size=160), twenty],
        [frame_header(dtype="|O8", size=160), twenty],
        [frame_header(dtype=">u2", size=40), twenty],
        [frame_header(dtype=["u1"]), twenty],
        [frame_header(shape=(100000, 100000, 4), size=4), b"1234"],
        [frame_header(shape=(100000, 100000, 4), enc="lz4", size=4), b"1234"],
        [frame_header(shape=(2**40, 2**40)), twenty],
        [frame_header(shape=(4, 5, 3, 2, 1)), twenty],
        [frame_header(shape=(4, 0)), twenty],
        [frame_header(shape=(4, -5)), twenty],
        [frame_header(shape=(4, 5.0)), twenty],
        [frame_header(shape="4x5"), twenty],
        [frame_header(gen=0), twenty],
        [frame_header(gen="7"), twenty],
        [frame_header(gen=True), twenty],
        [frame_header(size=21), twenty],
        [frame_header(meta=[1, 2]), twenty],
        [frame_header(enc="rot13"), twenty],
        [frame_header(enc="lz4", size=10**6), twenty],
        [frame_header(), twenty[:10]],               # payload shorter than the header says
        [frame_header(), twenty * 2],                # payload longer than the header says
        [frame_header()],                            # no payload part: only the header
        [frame_header(), twenty, b"more"],           # a part too many
        [frame_header(shape=(3, 50, 60), size=9000), b"\x00" * 9000],  # channels first
        [frame_header(enc="lz4", size=20), twenty],
        [frame_header(enc="zstd", size=20), twenty],
        [frame_header(enc="png", size=20), twenty],
        [frame_header(shape=(10, 10), enc="png", size=len(png_bytes((2, 2)))), png_bytes((2, 2))],
        [b"{" * 70000 + b"}", twenty],               # an oversized header
    ]


def test_relay_rejects_hostile_servers_and_keeps_relaying(procs, unique_key):
    dst = unique_key("dst")
    context = zmq.Context()
    raw = context.socket(zmq.ROUTER)
    raw.linger = 0
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    relay = Driven(procs, relay_child, f"tcp://127.0.0.1:{port}", dst,
                   {"max_frame_bytes": 1 << 20})

    def next_ident(timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if raw.poll(200):
                return raw.recv_multipart()[0]
        raise AssertionError("the relay said nothing")

    try:
        with SharedImage(dst) as reader:
            ident = next_ident()
            raw.send_multipart([ident, control(v=1, op="welcome", mode="lossy", key=dst)])
            expected, baseline = 0, None
            for round_ in range(ROUNDS // 3):
                raw.send_multipart([ident, control(v=1, op="ping")])  # a live server's pings
                for parts in bad_frames():
                    raw.send_multipart([ident, *parts])
                for message in (b"junk", control(v=1, op="frame"), control(v=1, op="hello",
                                                                         mode="lossy",
                                                                         credit=1)):
                    raw.send_multipart([ident, message])
                expected += len(bad_frames()) + 3
                # One round at a time: ZeroMQ's ROUTER silently drops what a slow relay
                # has not taken once its high-water marks are full, so a flood that ran
                # ahead of a busy relay would lose messages the count then waits for.
                facts = relay.wait_for(lambda f, n=expected: f["rejected"] == n)
                if round_ == 5:
                    baseline = facts["rss_kib"]
            assert facts["rss_kib"] - baseline < RSS_SLACK_KIB, (baseline, facts)
            assert facts["frames"] == 0
            good = np.arange(20, dtype=np.uint8).reshape(4, 5)
            raw.send_multipart([ident, frame_header(gen=5), good])
            relay.wait_for(lambda f: f["frames"] == 1)
            assert np.array_equal(reader.read(), good)
            # Over the relay's maximum frame size: ZeroMQ drops the connection before
            # any of it reaches Python; the relay reconnects and goes on.
            huge = 3 << 20
            raw.send_multipart([ident, frame_header(shape=(huge, 1), size=huge),
                                b"\x00" * huge])
            while (ident_now := next_ident()) == ident:
                pass
            header = encode_frame_header(FrameHeader(6, 0, (4, 5), np.dtype(np.uint8), "none",
                                                     20, 0, None))
            raw.send_multipart([ident_now, header, good + 1])
            relay.wait_for(lambda f: f["frames"] == 2)
            assert np.array_equal(reader.read(), good + 1)
            assert relay.ask()["rejected"] == expected
            relay.stop()
    finally:
        raw.close(0)
        context.term()


def test_every_bad_frame_is_a_wire_error():
    from shmimage.net.wire import WireError, parse_frame_header

    rejected_by_header = 0
    for parts in bad_frames():
        try:
            parse_frame_header(parts[0], 1 << 20)
        except WireError:
            rejected_by_header += 1
    assert rejected_by_header >= 20  # the rest pass the header and fail on the payload
    parse_frame_header(frame_header(), 1 << 20)


def test_random_bytes_and_json_never_raise_anything_but_wire_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from shmimage.net.wire import WireError, parse_control, parse_frame_header

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                          max_leaves=12)
    keys = st.sampled_from(["v", "op", "gen", "ts", "shape", "dtype", "enc", "size", "gap",
                            "meta", "n", "mode", "credit", "after", "key"])
    messages = (st.binary(max_size=200)
                | st.dictionaries(keys, values, max_size=10).map(
                    lambda d: json.dumps({"v": 1, "op": "frame", **d}).encode())
                | st.dictionaries(keys, values, max_size=6).map(
                    lambda d: json.dumps({"v": 1, **d}).encode()))

    @settings(max_examples=400, deadline=None)
    @given(messages)
    def check(data):
        for parse in (parse_control, lambda b: parse_frame_header(b, 1 << 20)):
            try:
                parse(data)
            except WireError:
                pass

    check()
