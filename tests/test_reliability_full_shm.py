"""A full /dev/shm: creation raises OutOfResourcesError, never a later SIGBUS.

The scenario runs in a private mount namespace (unshare -m) over a 64 MiB
tmpfs, so it can fill /dev/shm without touching the machine's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from workers_reliability import WAIT, report

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SIZE = os.environ.get("SHMIMAGE_SMALL_SHM_SIZE", "64m")


def run_in_small_shm() -> dict:
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private, small /dev/shm")
    probe = subprocess.run([unshare, "--mount", "true"], check=False, capture_output=True,
                           timeout=WAIT)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespaces here: {probe.stderr.decode().strip()}")
    code = "import json, workers_reliability as w; print(json.dumps(w.full_shm_scenario()))"
    shell = f'mount -t tmpfs -o size={SIZE},mode=1777 tmpfs /dev/shm && exec "$0" -c "$1"'
    env = {**os.environ, "PYTHONPATH": TESTS_DIR}
    result = subprocess.run([unshare, "--mount", "sh", "-c", shell, sys.executable, code],
                            check=False, capture_output=True, text=True, timeout=WAIT * 4,
                            env=env)
    assert result.returncode == 0, f"the scenario died ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def outcome() -> dict:
    found = run_in_small_shm()
    report("full /dev/shm", {k: v for k, v in found.items() if not k.startswith("entries")})
    return found


def test_creating_beyond_the_room_is_out_of_resources(outcome) -> None:
    assert outcome["entries_before"] == []
    assert outcome["create_too_big"] == "OutOfResourcesError"
    assert outcome["entries_after_failed_create"] == []
    assert outcome["create_when_full"] == "OutOfResourcesError"


def test_a_frame_too_big_for_the_room_fails_cleanly(outcome) -> None:
    assert outcome["publish_small"] == ["ok"] * 4
    assert outcome["publish_too_big"] == "OutOfResourcesError"
    assert outcome["read_after_too_big"] == "ok"  # the last good frame is still there
    assert outcome["publish_small_after_too_big"] == "ok"


def test_frames_that_fit_keep_working_when_full(outcome) -> None:
    assert outcome["free_with_ballast"] < 1 << 20
    assert outcome["publish_small_when_full"] == ["ok"] * 4
    assert outcome["publish_medium_when_full"] in ("ok", "OutOfResourcesError")
    assert outcome["reader_when_full"] == 0, "a reader died (SIGBUS?) or read a torn frame"


def test_everything_works_again_with_room(outcome) -> None:
    assert outcome["publish_medium_after"] == "ok"
    assert outcome["reader_after"] == 0
    assert outcome["entries_after"] == []
