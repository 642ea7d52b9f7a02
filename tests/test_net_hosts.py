"""Two hosts on one machine: `serve` in one network namespace, `relay` and a
consumer in another, joined by a veth pair. The relay side also gets a mount
namespace with a private tmpfs on /dev/shm: network namespaces share
/dev/shm, and without it a relay publishing the same key would write into the
producer's own segment and the test would pass with no network at all.

Needs root (`ip netns`, `unshare -m`); skipped otherwise. Only the two
namespace addresses this test gives its own veth pair are ever used.
"""
from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

from shmimage import SharedImage
from workers_cli import Lines, cli_env
from workers_net import indexed

TESTS = os.path.dirname(os.path.abspath(__file__))
PORT = 5560
TIMEOUT = 60.0


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def why_not() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux's"
    if os.geteuid() != 0:
        return "needs root to create network and mount namespaces"
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs the {tool!r} command"
    probe = f"shmi-probe-{uuid.uuid4().hex[:8]}"
    try:
        run("ip", "netns", "add", probe)
        run("ip", "netns", "exec", probe, "unshare", "-m", "true")
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"this sandbox cannot create namespaces: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, str]]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    net = f"10.213.{random.randint(1, 250)}"
    names = {"server_ns": f"shmi-srv-{tag}", "relay_ns": f"shmi-rly-{tag}",
             "server_ip": f"{net}.1", "relay_ip": f"{net}.2"}
    veth_a, veth_b = f"shmv{tag}a", f"shmv{tag}b"
    try:
        for ns in (names["server_ns"], names["relay_ns"]):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        for veth, ns, ip in ((veth_a, names["server_ns"], names["server_ip"]),
                             (veth_b, names["relay_ns"], names["relay_ip"])):
            run("ip", "link", "set", veth, "netns", ns)
            run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", veth)
            run("ip", "-n", ns, "link", "set", veth, "up")
        yield names
    finally:
        for ns in (names["server_ns"], names["relay_ns"]):  # takes the veth pair along
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def start_server(hosts: dict[str, str], key: str, *extra: str) -> subprocess.Popen[str]:
    address = f"tcp://{hosts['server_ip']}:{PORT}"
    return subprocess.Popen(
        ["ip", "netns", "exec", hosts["server_ns"], sys.executable, "-m", "shmimage", "serve",
         key, "--bind", address, "--insecure", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        start_new_session=True)


RELAY_SIDE = """
set -e
mount -t tmpfs -o size=256m shmimage-test /dev/shm
{python} -m shmimage relay {address} --key {key} {extra} >/dev/null &
relay=$!
echo "relay-pid $relay"
{python} -c {consumer}
kill -TERM $relay
wait $relay && echo "relay-exit 0" || echo "relay-exit $?"
echo "left $(ls -A /dev/shm | wc -l)"
"""


def start_relay_side(hosts: dict[str, str], key: str, last: int,
                     *extra: str) -> subprocess.Popen[str]:
    """The relay and a consumer in the relay's namespaces, with their own /dev/shm.
    Lossless: the consumer takes every frame through a lossless subscription."""
    consume = "consume_every_printed" if "--lossless" in extra else "consume_until"
    consumer = (f"import sys; sys.path.insert(0, {TESTS!r}); from workers_net import "
                f"{consume}; {consume}({key!r}, {last}, {TIMEOUT})")
    script = RELAY_SIDE.format(python=shlex.quote(sys.executable),
                               address=f"tcp://{hosts['server_ip']}:{PORT}",
                               key=shlex.quote(key), extra=" ".join(extra),
                               consumer=shlex.quote(consumer))
    return subprocess.Popen(
        ["ip", "netns", "exec", hosts["relay_ns"], "unshare", "-m", "--propagation", "private",
         "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(), start_new_session=True)


def end(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int | None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(TIMEOUT / 2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(TIMEOUT / 2)
    return proc.returncode


@pytest.mark.parametrize("lossless", [True, False], ids=["lossless", "lossy"])
def test_frames_cross_between_namespaces(hosts, unique_key, lossless):
    key = unique_key("hosts")
    flag = ("--lossless",) if lossless else ()
    last = 40
    with SharedImage(key) as writer:
        writer.publish(indexed(0, (120, 160, 3), "uint8"), meta={"i": 0})
        server = start_server(hosts, key, *flag)
        side = start_relay_side(hosts, key, last, *flag)
        try:
            out = Lines(side.stdout)
            relay_pid = int(out.expect(lambda line: line.startswith("relay-pid")).split()[1])
            seen = [out.expect(lambda line: line.startswith("frame"))]
            if lossless:  # a burst: the writer is held back, every frame must arrive
                for index in range(1, last + 1):
                    writer.publish(indexed(index, (120, 160, 3), "uint8"), meta={"i": index},
                                   timeout=TIMEOUT)
                for _ in range(last):
                    seen.append(out.expect(lambda line: line.startswith(("frame", "bad"))))
                assert [line.split()[0] for line in seen] == ["frame"] * (last + 1)
                assert [int(line.split()[1]) for line in seen] == list(range(last + 1))
            else:  # a burst: the newest frame must arrive
                for index in range(1, last + 1):
                    writer.publish(indexed(index, (120, 160, 3), "uint8"))
                seen.append(out.expect(lambda line: line.startswith(f"frame {last} ")))
                values = [int(line.split()[1]) for line in seen]
                assert values == sorted(values)
            # Read from the relay's own segment in the private /dev/shm, not the producer's.
            assert all(int(line.split()[3]) == relay_pid for line in seen)
            assert out.expect(lambda line: line.startswith("relay-exit")) == "relay-exit 0"
            assert out.expect(lambda line: line.startswith("left")) == "left 0"
            assert side.wait(TIMEOUT) == 0
            assert end(server) == 0
        finally:
            end(side, signal.SIGKILL)
            end(server, signal.SIGKILL)
