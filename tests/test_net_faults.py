"""shmimage.net under faults: a SIGKILLed server comes back, a relay vanishes."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

from shmimage import SharedImage
from workers_net import Driven, indexed, relay_child, serve_child, wait_for_value


def test_relay_resumes_after_the_server_is_killed_and_restarted(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(1))
        server = Driven(procs, serve_child, src, "tcp://127.0.0.1:*", {"lossless": True})
        endpoint = server.first
        relay = Driven(procs, relay_child, endpoint, dst, {"lossless": True})
        wait_for_value(reader, 1)
        for index in range(2, 6):
            writer.publish(indexed(index))
            wait_for_value(reader, index)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.join(10)
        for index in range(6, 11):  # published while no server runs
            writer.publish(indexed(index))
        again = Driven(procs, serve_child, src, endpoint, {"lossless": True})
        assert again.first == endpoint
        wait_for_value(reader, 10)  # the relay resumed after generation 5: the newest is 10
        for index in range(11, 16):
            writer.publish(indexed(index))
            assert (wait_for_value(reader, index) == index).all()
        facts = relay.stop()
        again.stop()
        # 6..9 were overwritten before the new server could read them: counted, not faked.
        assert facts["dropped"] == 4
        assert facts["frames"] == 15 - 4
        assert facts["rejected"] == 0


def test_server_keeps_serving_when_a_relay_is_killed(procs, unique_key):
    src, dst_a, dst_b = unique_key("src"), unique_key("a"), unique_key("b")
    with SharedImage(src) as writer, SharedImage(dst_b) as reader_b:
        writer.publish(indexed(1))
        server = Driven(procs, serve_child, src, "tcp://127.0.0.1:*", {})
        relay_a = Driven(procs, relay_child, server.first, dst_a, {})
        relay_b = Driven(procs, relay_child, server.first, dst_b, {})
        relay_a.wait_for(lambda facts: facts["frames"] >= 1)
        server.wait_for(lambda facts: facts["relays"] == 2)
        os.kill(relay_a.proc.pid, signal.SIGKILL)
        relay_a.proc.join(10)
        for index in range(2, 40):
            writer.publish(indexed(index))
            wait_for_value(reader_b, index)
        # The dead relay is forgotten after 5 s of silence; the live one stays served.
        server.wait_for(lambda facts: facts["relays"] == 1, timeout=15)
        writer.publish(indexed(99))
        wait_for_value(reader_b, 99)
        relay_b.stop()
        assert server.stop()["alive"] is False
    # The killed relay's segment: no live process uses it, so the collector reclaims it.
    from shmimage.memory import collect_garbage

    collect_garbage()


def test_relay_keeps_trying_until_a_server_appears(procs, unique_key):
    src, dst = unique_key("src"), unique_key("dst")
    with SharedImage(src) as writer, SharedImage(dst) as reader:
        writer.publish(indexed(3))
        probe = Driven(procs, serve_child, src, "tcp://127.0.0.1:*", {})
        endpoint = probe.first  # a free port, then nobody listens there
        probe.stop()
        relay = Driven(procs, relay_child, endpoint, dst, {})
        assert relay.ask()["frames"] == 0
        server = Driven(procs, serve_child, src, endpoint, {})
        wait_for_value(reader, 3)
        relay.stop()
        server.stop()


def test_a_stopped_relay_never_holds_up_the_writer_or_the_others(procs, unique_key):
    # Credits cap what waits for the stopped relay at 2 frames; the server pins at
    # most two slots (the store takes spare ones) and sends the rest from copies,
    # so the writer always has a slot.
    src, dst_a, dst_b = unique_key("src"), unique_key("a"), unique_key("b")
    shape = (2160, 3840, 3)  # 2 in flight outgrow the kernel's socket buffers
    with SharedImage(src) as writer, SharedImage(dst_a) as reader_a, \
            SharedImage(dst_b) as reader_b:
        writer.publish(np.zeros(shape, np.uint8))
        server = Driven(procs, serve_child, src, "tcp://127.0.0.1:*", {})
        stalled = Driven(procs, relay_child, server.first, dst_a, {})
        live = Driven(procs, relay_child, server.first, dst_b, {})
        wait_for_value(reader_a, 0)
        wait_for_value(reader_b, 0)
        os.kill(stalled.proc.pid, signal.SIGSTOP)
        try:
            for index in range(1, 30):
                writer.publish(np.full(shape, index, np.uint8), timeout=2.0)
            assert (wait_for_value(reader_b, 29) == 29).all()
        finally:
            os.kill(stalled.proc.pid, signal.SIGCONT)
        wait_for_value(reader_a, 29)
        stalled.stop()
        live.stop()
        server.stop()
