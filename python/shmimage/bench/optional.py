"""Optional baselines and the plot: which are installed, and why not if not."""
from __future__ import annotations

import importlib
import os

from .methods_shmimage import has_read_out

#: Short name -> (module to import, what it provides).
OPTIONAL = {
    "pyshmem": ("pyshmem", "round-trip peer"),
    "SharedArray": ("SharedArray", "round-trip peer"),
    "posix_ipc": ("posix_ipc", "round-trip peer and semaphore ping-pong"),
    "iceoryx2": ("iceoryx2", "round-trip peer, with its own events"),
    "pyzmq": ("zmq", "round-trip peer (PAIR over ipc://)"),
    "imagezmq": ("imagezmq", "round-trip peer (REQ/REP and PUB/SUB over ipc://)"),
    "PySide6": ("PySide6.QtGui", "the Qt example's method"),
    "matplotlib": ("matplotlib", "--plot"),
}
#: The feature ``SharedImage.read(out=)``, reported like a missing package when absent.
READ_OUT = "read(out=)"
INSTALL_HINT = "pip install 'shmimage[bench]'"
PROC_STATUS = "/proc/self/status"


def missing() -> dict[str, str]:
    """Name -> reason, for every optional package that cannot be used here."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    reasons = {}
    for name, (module, _) in OPTIONAL.items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken native library
            reasons[name] = f"not installed ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
    if not has_read_out():
        reasons[READ_OUT] = "not in this version: SharedImage.read() takes no out="
    if not os.path.exists(PROC_STATUS):
        reasons["procfs"] = f"unavailable: RssAnon is read from {PROC_STATUS} (Linux)"
    return reasons
