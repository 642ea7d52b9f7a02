"""Where the peers' own files go during a run, and their removal after it.

iceoryx2 keeps node and service files under a root path (``/tmp/iceoryx2/`` by
default) and shared memory named ``iox2_*`` in ``/dev/shm``; pyzmq's ``ipc://``
endpoints are socket files. A run gives them a temporary folder and a prefix
of its own, so nothing of the user's is touched, and removes what is left
under both when it ends, however it ends.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator

from .frames import unique_name

SHM_DIR = "/dev/shm"


@dataclasses.dataclass(frozen=True)
class Home:
    """The run's folder, iceoryx2's root path and prefix inside it, and the ipc folder."""

    folder: str
    prefix: str

    @property
    def iceoryx2_root(self) -> str:
        return os.path.join(self.folder, "iceoryx2") + os.sep

    @property
    def sockets(self) -> str:
        return os.path.join(self.folder, "ipc")

    def endpoint(self, tag: str) -> str:
        """A fresh ``ipc://`` address in the run's folder."""
        return f"ipc://{os.path.join(self.sockets, unique_name(tag))}"


_home: Home | None = None


def home() -> Home:
    """The current run's home (inside :func:`isolated`)."""
    if _home is None:
        raise RuntimeError("no peer home: not inside sandbox.isolated()")
    return _home


def leftovers(prefix: str) -> list[str]:
    """Entries of ``/dev/shm`` named with ``prefix``."""
    if not os.path.isdir(SHM_DIR):
        return []
    return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(prefix))


@contextlib.contextmanager
def isolated() -> Iterator[Home]:
    """A temporary home for the peers' files for the block; everything in it removed after."""
    global _home
    if _home is not None:  # nested: the outer block owns the home
        yield _home
        return
    folder = tempfile.mkdtemp(prefix=f"shmimage-bench-{os.getpid()}-")
    _home = Home(folder, unique_name("x") + "_")
    os.makedirs(_home.iceoryx2_root)
    os.makedirs(_home.sockets)
    try:
        yield _home
    finally:
        prefix, _home = _home.prefix, None
        for entry in leftovers(prefix):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, entry))
        shutil.rmtree(folder, ignore_errors=True)
