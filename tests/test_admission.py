"""Memory admission: a request beyond the headroom is OutOfResourcesError in a
process that lives on, never an OOM kill.

Each limit is met by a real child interpreter: the segment directory's free
space and MemAvailable inside a private mount namespace (unshare -m) over a
tmpfs of a chosen size, a cgroup's memory limit in a child cgroup made for
the test, and a limit reached midway, while another process takes the room.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from shmimage import OutOfResourcesError, _shmcore

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
WAIT = 120
MIB = 1 << 20


def _child(argv: list[str]) -> dict:
    """Run a child interpreter (`argv`); it must survive and print JSON last."""
    env = {**os.environ, "PYTHONPATH": TESTS_DIR}
    result = subprocess.run(argv, check=False,
                            capture_output=True, text=True, timeout=WAIT, env=env)
    assert result.returncode == 0, (
        f"the child died ({result.returncode}; -9 is the OOM killer): {result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def _in_tmpfs(size: str, scenario: str) -> dict:
    """A scenario inside a private mount namespace whose /dev/shm is a fresh tmpfs."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private /dev/shm of a chosen size")
    probe = subprocess.run([unshare, "--mount", "true"], check=False, capture_output=True,
                           timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here: {probe.stderr.decode().strip()}")
    shell = f'mount -t tmpfs -o size={size},mode=1777 tmpfs /dev/shm && exec "$0" -c "$1"'
    code = f"import workers_admission as w; w.main({scenario!r})"
    return _child([unshare, "--mount", "sh", "-c", shell, sys.executable, code])


def _memory_total() -> int:
    with open("/proc/meminfo") as f:
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return fields["MemTotal"] + fields.get("SwapTotal", 0)


def test_beyond_free_space_of_the_segment_directory() -> None:
    found = _in_tmpfs("256m", "beyond_free_space")
    assert found["entries_before"] == []
    assert found["too_big"]["outcome"] == "OutOfResourcesError"
    message = found["too_big"]["message"]
    assert message.startswith("create 'adm-space' (/shmi_admspace_"), message
    assert "available (free space of /dev/shm)" in message, message
    assert found["entries_after"] == []
    assert found["free_after"] == found["free"]  # nothing was kept
    assert found["fits"]["outcome"] == "ok"


def test_beyond_ram_and_swap_is_refused_not_oom_killed() -> None:
    # A tmpfs twice the size of RAM + swap: only MemAvailable can say no.
    found = _in_tmpfs(str(2 * _memory_total()), "beyond_memory")
    assert found["too_big"]["outcome"] == "OutOfResourcesError", found
    assert "MemAvailable" in found["too_big"]["message"]
    assert "asked for " in found["too_big"]["message"]
    assert found["entries_after"] == []
    assert found["fits"]["outcome"] == "ok"


def test_limit_reached_midway_releases_everything() -> None:
    found = _in_tmpfs("1g", "limit_reached_midway")
    assert found["ballast_status"] == 0
    ballast = found["ballast"]
    # The other process began taking room only once the reservation was under way.
    assert ballast["seen_reserved"] >= 16 * MIB
    assert found["create"]["outcome"] == "OutOfResourcesError", found
    assert found["entries_after"] == ["ballast"]
    # All the room is the ballast's or free again: the creator kept nothing.
    assert found["free_after"] + ballast["taken"] >= found["free"] - 8 * MIB


# -- a child cgroup with a small memory limit --


class _Cgroup:
    """A child cgroup of this process's own, with a memory limit, for one test."""

    def __init__(self, path: str, version: int, limit: int) -> None:
        self.path, self.version, self.limit = path, version, limit
        os.mkdir(path)
        limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(limit))

    @property
    def procs(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with open(os.path.join(self.path, name)) as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0

    def remove(self) -> None:
        os.rmdir(self.path)


def _own_cgroup(controller: str) -> str | None:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path
    return None


def _writable_cgroup_parent() -> tuple[str, int] | str:
    """(directory, version) to make a child cgroup with a memory limit in, or
    why there is none."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux to make a child cgroup"
    reasons = []
    v2 = _own_cgroup("")
    for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        controllers = os.path.join(mount, "cgroup.controllers")
        if v2 is None or not os.path.exists(controllers):
            continue
        parent = mount + v2.rstrip("/")
        try:
            with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError as exc:
            reasons.append(f"cgroup v2 at {mount}: {exc}")
            continue
        if "memory" in enabled and os.access(parent, os.W_OK):
            return parent, 2
        reasons.append(f"cgroup v2 at {mount}: no memory controller for children of {parent}")
    v1 = _own_cgroup("memory")
    if v1 is not None:
        parent = "/sys/fs/cgroup/memory" + v1.rstrip("/")
        if os.access(parent, os.W_OK):
            return parent, 1
        reasons.append(f"cgroup v1 memory at {parent} is not writable")
    return "; ".join(reasons) or "no cgroup memory controller here"


@pytest.fixture
def small_cgroup() -> Iterator[_Cgroup]:
    where = _writable_cgroup_parent()
    if isinstance(where, str):
        pytest.skip(where)
    parent, version = where
    try:
        group = _Cgroup(os.path.join(parent, f"shmi-admission-{uuid.uuid4().hex[:8]}"),
                        version, 256 * MIB)
    except OSError as exc:
        pytest.skip(f"cannot make a child cgroup under {parent}: {exc}")
    try:
        yield group
    finally:
        group.remove()


def test_beyond_the_cgroup_limit_is_refused_without_oom_kill(small_cgroup) -> None:
    kills_before = small_cgroup.oom_kills()
    code = (f"import os; open({small_cgroup.procs!r}, 'w').write(str(os.getpid())); "
            f"import workers_admission as w; w.main('beyond_cgroup', '{small_cgroup.limit}')")
    found = _child([sys.executable, "-c", code])
    assert small_cgroup.oom_kills() == kills_before
    assert found["too_big"]["outcome"] == "OutOfResourcesError", found
    limit_file = "memory.max" if small_cgroup.version == 2 else "memory.limit_in_bytes"
    assert f"({limit_file} of cgroup " in found["too_big"]["message"]
    assert found["frame_fits"]["outcome"] == "ok"
    assert found["frame_too_big"]["outcome"] == "OutOfResourcesError", found
    assert found["frame_after"]["outcome"] == "ok"  # the last good frame is still there
    assert found["fits"]["outcome"] == "ok"
    assert found["entries_after"] == []


# -- what the core reports, in this process --


def test_last_admission_says_what_bound_it() -> None:
    assert _shmcore.ADMIT_STEP == 64 * MIB
    with pytest.raises(OutOfResourcesError) as caught:
        _shmcore.Segment.build(1 << 62, b"adm-huge")
    facts = _shmcore.last_admission()
    assert facts is not None and facts["asked"] > 1 << 61
    assert facts["available"] < facts["asked"]
    assert facts["what"] in str(caught.value)
