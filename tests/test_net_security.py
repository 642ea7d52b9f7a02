"""shmimage.net's security: local binds by default, CURVE keys, unknown clients refused."""
from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

import zmq.auth
from shmimage import NoFrameError, NotFoundError, SharedImage
from shmimage.net import Relay, Server
from shmimage.net.security import check_bind, is_local
from workers_net import Driven, indexed, relay_child, serve_child, wait_for_value


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5560", "tcp://localhost:1",
                                     "tcp://[::1]:5560", "ipc:///tmp/x", "inproc://x"])
def test_local_addresses_need_nothing(address):
    assert is_local(address)
    check_bind(address, None, False)


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:5560", "tcp://*:5560",
                                     "tcp://10.1.2.3:5560", "tcp://eth0:5560"])
def test_other_binds_need_curve_or_insecure(address, unique_key):
    with pytest.raises(ValueError, match="--insecure"):
        Server(unique_key(), address)
    check_bind(address, None, True)
    check_bind(address, "/some/dir", False)


def test_missing_or_bad_key_files_are_named(tmp_path, unique_key):
    with pytest.raises(ValueError, match="server.key_secret"):
        Server(unique_key(), "tcp://127.0.0.1:*", curve=str(tmp_path))
    (tmp_path / "server.key_secret").write_text("not a certificate")
    with pytest.raises(ValueError, match="not a certificate"):
        Server(unique_key(), "tcp://127.0.0.1:*", curve=str(tmp_path))
    with pytest.raises(ValueError, match="server.key in"):
        Relay("tcp://127.0.0.1:9", curve=str(tmp_path))


def make_keys(folder, *names):
    folder.mkdir()
    for name in names:
        zmq.auth.create_certificates(str(folder), name)
    return str(folder)


def test_curve_right_key_gets_frames_unknown_key_gets_nothing(procs, unique_key, tmp_path):
    known = make_keys(tmp_path / "known", "server", "client")
    stranger = make_keys(tmp_path / "stranger", "client")
    shutil.copy(tmp_path / "known" / "server.key", tmp_path / "stranger" / "server.key")
    src, dst_good, dst_bad = unique_key("src"), unique_key("good"), unique_key("bad")
    with SharedImage(src) as writer, SharedImage(dst_good) as good, \
            SharedImage(dst_bad) as bad:
        writer.publish(indexed(1))
        server = Driven(procs, serve_child, src, "tcp://127.0.0.1:*", {"curve": known})
        intruder = Driven(procs, relay_child, server.first, dst_bad, {"curve": stranger})
        plain = Driven(procs, relay_child, server.first, unique_key("plain"), {})
        friend = Driven(procs, relay_child, server.first, dst_good, {"curve": known})
        wait_for_value(good, 1)
        for index in range(2, 6):
            writer.publish(indexed(index))
            wait_for_value(good, index)
        time.sleep(1.0)
        for outsider in (intruder, plain):
            facts = outsider.ask()
            assert facts["frames"] == 0 and not facts["connected"]
            outsider.stop()
        with pytest.raises((NotFoundError, NoFrameError)):  # nothing ever published there
            bad.read()
        assert server.ask()["relays"] == 1
        friend.stop()
        server.stop()
