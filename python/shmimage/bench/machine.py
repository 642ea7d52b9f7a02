"""What machine the figures come from."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return round(pages * page_size / 2**30, 1)


def describe() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_1min": _load(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": source_commit(),
    }


def source_commit() -> str | None:
    """The git commit the measured package was built from (``+dirty`` with uncommitted
    changes), when it runs from its source checkout; None from an installed wheel."""
    package = Path(__file__).resolve().parents[1]
    try:
        top = _git(package, "rev-parse", "--show-toplevel")
        if top is None or Path(top, "python", "shmimage").resolve() != package:
            return None  # some other repository around an installed copy
        commit = _git(package, "rev-parse", "HEAD")
        dirty = _git(package, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return None if commit is None else commit + ("+dirty" if dirty else "")


def _git(where: Path, *args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                          timeout=10, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def finished(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average at the end of the run: how busy it was throughout."""
    return info | {"load_average_1min_end": _load()}


def _load() -> float | None:
    """Other work on the machine makes every figure noisier; the table says how much."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def busy_warning(info: dict[str, Any]) -> str | None:
    """A warning when other work competed for the CPUs while the suite ran."""
    now, cores = _load(), info.get("cores") or 1
    loads = [x for x in (info.get("load_average_1min"), now) if x is not None]
    if not loads or max(loads) < cores / 2:
        return None
    return (f"warning: the machine was busy (load average up to {max(loads)} on {cores} "
            "cores): every figure is noisier than on an idle machine")


def one_line(info: dict[str, Any]) -> str:
    return (f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
            f"{info['os']}, Python {info['python']}, numpy {info['numpy']}, "
            f"load average {info['load_average_1min']} at start")
