"""Across hosts on ZeroMQ: `serve` a local key, `relay` it into a key on another host.

Needs the ``net`` extra (``pip install 'shmimage[net]'``: pyzmq; lz4 and
zstandard add those compressions). ``import shmimage`` never imports this.
"""
from __future__ import annotations

try:
    import zmq  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("shmimage.net needs pyzmq: pip install 'shmimage[net]'") from exc

from .relay import Relay, relay
from .server import DEFAULT_BIND, Server, serve
from .stats import Stats
from .wire import MAX_FRAME_BYTES, WireError

__all__ = ["DEFAULT_BIND", "MAX_FRAME_BYTES", "Relay", "Server", "Stats", "WireError",
           "relay", "serve"]
