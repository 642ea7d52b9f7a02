"""shmimage.net under faults: a SIGKILLed server comes back, a relay vanishes."""
from __future__ import annotations

import os
import signal

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
