"""Two hosts on one machine: `shmimage serve` and `shmimage relay` on 127.0.0.1.

Starts the CLI's server on KEY and a relay into KEY-remote (what the second
host would run, with ``--curve-dir`` between real hosts), publishes frames
into KEY and reads them back from KEY-remote, then stops both with SIGTERM.

    python examples/two_hosts.py --key camera --frames 5
"""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys

import numpy as np
from shmimage import SharedImage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key", default="camera")
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    address = f"tcp://127.0.0.1:{free_port()}"
    cli = [sys.executable, "-m", "shmimage"]
    remote_key = args.key + "-remote"
    with SharedImage(args.key) as local, SharedImage(remote_key) as remote:
        local.publish(np.zeros((4, 4), np.uint8), meta={"index": -1})
        server = subprocess.Popen(cli + ["serve", args.key, "--bind", address])
        relay = subprocess.Popen(cli + ["relay", address, "--key", remote_key])
        try:
            seen = remote.wait(timeout=20.0, after=0)    # the relay is up
            for index in range(args.frames):
                local.publish(np.full((240, 320, 3), index, np.uint8), meta={"index": index})
                while True:  # lossy: the newest frame wins, so wait for this one
                    seen = remote.wait(timeout=10.0, after=seen)
                    pixels, info = remote.read_frame()
                    if info.meta["index"] == index:
                        break
                print(f"frame {index} arrived: {pixels.shape} value {pixels[0, 0, 0]}",
                      flush=True)
        finally:
            for process in (relay, server):
                process.send_signal(signal.SIGTERM)
            for process in (relay, server):
                process.wait(timeout=10)
    print(f"server exit {server.returncode}, relay exit {relay.returncode}")


if __name__ == "__main__":
    main()
