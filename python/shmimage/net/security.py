"""Who may listen where, and CURVE keys in `zmq.auth.create_certificates` layout."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def is_local(address: str) -> bool:
    """True for an address only this machine can reach."""
    transport, _, rest = address.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0] if transport == "tcp" else None
    return host in LOCAL_HOSTS


SHM_DIR = "/dev/shm"


def segment_identity(native_key: str) -> list[int] | None:
    """(device, inode) of a segment's file where /dev/shm shows it, else None: what
    tells a relay it is about to publish into the very segment it is served from."""
    try:
        facts = os.stat(os.path.join(SHM_DIR, native_key.lstrip("/")))
    except (OSError, ValueError):
        return None
    return [facts.st_dev, facts.st_ino]


def check_bind(address: str, curve_dir: str | None, insecure: bool) -> None:
    """ValueError for a bind other hosts can reach with neither CURVE nor ``insecure``."""
    if "://" not in address:
        raise ValueError(f"bind address {address[:100]!r} is not a ZeroMQ endpoint "
                         "(like tcp://127.0.0.1:5560)")
    if not (is_local(address) or curve_dir or insecure):
        raise ValueError(f"binding {address[:100]!r} without CURVE lets any host read the "
                         "frames: give a --curve-dir, or --insecure to mean it")


def _pair(curve_dir: Path, name: str) -> tuple[bytes, bytes | None]:
    path = curve_dir / name
    if not path.is_file():
        raise ValueError(f"CURVE: no {name} in {str(curve_dir)[:200]} (made by "
                         "zmq.auth.create_certificates)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ValueError(f"CURVE: {path.name} is not a certificate: {exc}") from exc
    return public, secret


class _AllowedKeys:
    """Client keys the server accepts: every public key in the directory but its own."""

    def __init__(self, keys: set[bytes]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


@dataclass(frozen=True)
class CurveKeys:
    public: bytes
    secret: bytes
    peers: frozenset[bytes]  # server: the client keys it accepts; client: the server's key


def server_keys(curve_dir: str) -> CurveKeys:
    """``server.key_secret``, and every other public ``*.key`` in the directory."""
    folder = Path(curve_dir)
    public, secret = _pair(folder, "server.key_secret")
    allowed: set[bytes] = set()
    for path in sorted(folder.glob("*.key")):
        try:
            key, _ = zmq.auth.load_certificate(path)
        except (ValueError, OSError):
            continue
        if key != public:
            allowed.add(key)
    return CurveKeys(public, _secret(secret, folder), frozenset(allowed))


def client_keys(curve_dir: str) -> CurveKeys:
    """``client.key_secret``, trusting ``server.key``."""
    folder = Path(curve_dir)
    server_public, _ = _pair(folder, "server.key")
    public, secret = _pair(folder, "client.key_secret")
    return CurveKeys(public, _secret(secret, folder), frozenset({server_public}))


def _secret(secret: bytes | None, folder: Path) -> bytes:
    if not secret:
        raise ValueError(f"CURVE: the secret key file in {str(folder)[:200]} holds no secret key")
    return secret


def serve_with_curve(context: zmq.Context[Any], sock: zmq.Socket[Any],
                     keys: CurveKeys) -> ThreadAuthenticator:
    """Make ``sock`` a CURVE server that refuses every client key but ``keys.peers``."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_AllowedKeys(set(keys.peers)))
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True
    return auth


def connect_with_curve(sock: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make ``sock`` a CURVE client of the one server key in ``keys.peers``."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = next(iter(keys.peers))
