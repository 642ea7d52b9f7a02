"""Lossless serve/relay: one lossless subscription per relay on the server, credits,
backpressure that reaches the local writer, and resume or gap on reconnect.

Every frame carries its index in its meta and in its pixels; a consumer on the
relay side takes them through its own lossless subscription and checks both.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

from shmimage import SharedImage
from workers_net import TIMEOUT, Driven, consume_every, frame_of, relay_child, serve_child

LOOPBACK = "tcp://127.0.0.1:*"
SILENCE = 5.0  # a relay this long silent is dropped by the server


class Consumer:
    """A child taking every frame of ``key`` (see `workers_net.consume_every`)."""

    def __init__(self, procs, key, last, *, slow=0.0, stall=False):
        self.conn, child = multiprocessing.get_context("spawn").Pipe()
        self.proc = procs.start(consume_every, child, key, last, slow, stall)
        assert self.conn.poll(TIMEOUT) and self.conn.recv() == "ready"

    def go(self):
        self.conn.send("go")

    def result(self):
        assert self.conn.poll(TIMEOUT * 2), "the consumer never got its last frame"
        answer = self.conn.recv()
        assert answer[0] == "ok", answer[1]
        self.proc.join(TIMEOUT)
        return answer[1], answer[2]


def publish(writer, index, timeout=TIMEOUT):
    return writer.publish(frame_of(index), meta={"i": index}, timeout=timeout)


def start(procs, src, dst):
    """A lossless server and relay; the relay has published frame 0 into ``dst``."""
    server = Driven(procs, serve_child, src, LOOPBACK, {"lossless": True})
    relay = Driven(procs, relay_child, server.first, dst, {"lossless": True})
    relay.wait_for(lambda facts: facts["last_generation"] >= 1)
    return server, relay


def held_back(writer, server, first, limit=60):
    """Publish from index ``first`` with a short timeout until the writer is held
    back; the index that was not published. The TimeoutError names the server."""
    for index in range(first, first + limit):
        try:
            publish(writer, index, timeout=0.5)
        except TimeoutError as exc:
            assert str(server.proc.pid) in str(exc), str(exc)
            return index
    raise AssertionError(f"{limit} frames and the writer was never held back")


def check_in_order(got, first, last):
    indices = [index for index, _ in got]
    assert indices == sorted(set(indices)), "a frame twice or out of order"
    assert indices[0] == first and indices[-1] == last
    assert all(ok for _, ok in got), "pixels that are not the frame's"
    return indices


def test_a_burst_arrives_every_frame_once_in_order(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    last = 300
    with SharedImage(src) as writer:
        publish(writer, 0)
        server, relay = start(procs, src, dst)
        consumer = Consumer(procs, dst, last, slow=0.004)
        for index in range(1, last + 1):  # as fast as the writer can: nothing may be lost
            publish(writer, index)
        got, dropped = consumer.result()
        assert check_in_order(got, 0, last) == list(range(last + 1)) and dropped == 0
        facts = relay.stop()
        assert facts["frames"] == last + 1 and facts["dropped"] == 0
        assert facts["rejected"] == 0
        assert server.stop()["frames"] == last + 1


def test_a_stalled_consumer_holds_the_writer_back_through_the_relay(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    last = 40
    with SharedImage(src) as writer:
        publish(writer, 0)
        server, relay = start(procs, src, dst)
        consumer = Consumer(procs, dst, last, stall=True)
        stuck = held_back(writer, server, 1)
        # The relay waits for its consumer, not for the network: it keeps pinging,
        # so the server does not drop it after 5 s, and the writer stays held.
        time.sleep(SILENCE + 1.5)
        assert server.ask()["relays"] == 1
        with pytest.raises(TimeoutError, match=str(server.proc.pid)):
            publish(writer, stuck, timeout=0.5)
        consumer.go()
        for index in range(stuck, last + 1):
            publish(writer, index)
        got, dropped = consumer.result()
        assert check_in_order(got, 0, last) == list(range(last + 1)) and dropped == 0
        assert relay.stop()["dropped"] == 0
        server.stop()


def test_a_stopped_relay_holds_the_writer_until_dropped_then_counts_the_gap(
        procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    with SharedImage(src) as writer, SharedImage(dst) as reader:  # the latest frame only
        publish(writer, 0)
        server, relay = start(procs, src, dst)
        for index in range(1, 5):
            publish(writer, index)
        relay.wait_for(lambda facts: facts["last_generation"] == 5)
        os.kill(relay.proc.pid, signal.SIGSTOP)
        try:
            stuck = held_back(writer, server, 5)
            started = time.monotonic()
            publish(writer, stuck)  # freed once the server drops the silent relay
            assert time.monotonic() - started < SILENCE + 10
            server.wait_for(lambda facts: facts["relays"] == 0, 2.0)
            for index in range(stuck + 1, stuck + 6):  # published while the relay is away
                publish(writer, index)
        finally:
            os.kill(relay.proc.pid, signal.SIGCONT)
        last = stuck + 10
        for index in range(stuck + 6, last + 1):
            publish(writer, index)
        newest = writer.info().generation
        facts = relay.wait_for(lambda f: f["last_generation"] == newest)
        frame = reader.read_frame()
        assert frame.info.meta["i"] == last and (frame.pixels == last % 256).all()
        # What the store no longer kept is counted, never faked.
        assert facts["dropped"] > 0
        assert facts["frames"] + facts["dropped"] == newest
        assert facts["rejected"] == 0
        relay.stop()
        server.stop()


def test_a_relay_that_comes_back_resumes_after_its_last_frame(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    last = 30
    with SharedImage(src, history=16) as writer:
        publish(writer, 0)
        server, relay = start(procs, src, dst)
        consumer = Consumer(procs, dst, last)
        for index in range(1, 10):
            publish(writer, index)
        relay.wait_for(lambda facts: facts["last_generation"] == 10)
        os.kill(relay.proc.pid, signal.SIGSTOP)
        try:
            for index in range(10, 14):
                publish(writer, index)
            server.wait_for(lambda facts: facts["relays"] == 0, timeout=SILENCE + 10)
            for index in range(14, 18):  # the server no longer serves it: nobody waits
                publish(writer, index, timeout=0.5)
        finally:
            os.kill(relay.proc.pid, signal.SIGCONT)
        # Back (on its old connection, or a new one after its own 5 s of silence).
        server.wait_for(lambda facts: facts["relays"] == 1)
        for index in range(18, last + 1):
            publish(writer, index)
        got, dropped = consumer.result()
        # The store still kept everything after the relay's last frame: nothing lost.
        assert check_in_order(got, 0, last) == list(range(last + 1)) and dropped == 0
        facts = relay.stop()
        assert facts["dropped"] == 0 and facts["frames"] == last + 1
        server.stop()


def test_a_killed_relay_frees_the_writer_and_the_server_serves_the_next(procs, unique_key):
    src, dst, other = unique_key("src"), unique_key("dst"), unique_key("other")
    with SharedImage(src) as writer:
        publish(writer, 0)
        server, relay = start(procs, src, dst)
        os.kill(relay.proc.pid, signal.SIGKILL)
        relay.proc.join(TIMEOUT)
        stuck = held_back(writer, server, 1)
        publish(writer, stuck)  # freed once the server drops the dead relay
        assert server.ask()["relays"] == 0
        again = Driven(procs, relay_child, server.first, other, {"lossless": True})
        again.wait_for(lambda facts: facts["last_generation"] == stuck + 1)
        publish(writer, stuck + 1)
        again.wait_for(lambda facts: facts["last_generation"] == stuck + 2)
        assert again.stop()["dropped"] == 0
        server.stop()
    from shmimage.memory import collect_garbage

    collect_garbage()  # the killed relay's segment: nobody uses it any more
