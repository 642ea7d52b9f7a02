"""`ls` and `gc` where segments do not live in /dev/shm: the core built with
SHMP_FORCE_PORTABLE (macOS's paths, as far as they run on Linux) keeps them
in its own directory, and the Python side finds them by asking the core."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from portable_core import build_portable_package

TESTS_DIR = Path(__file__).resolve().parent
WAIT = 300


@pytest.fixture(scope="module")
def portable_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package whose _shmcore is the portable build."""
    pytest.importorskip("Cython", reason="needs Cython to build the portable core")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs a C compiler to build the portable core")
    return build_portable_package(tmp_path_factory.mktemp("portable"))


def test_ls_and_gc_find_segments_where_the_core_keeps_them(portable_package: Path) -> None:
    live, stale = f"port-live-{uuid.uuid4().hex[:8]}", f"port-stale-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": f"{portable_package}{os.pathsep}{TESTS_DIR}"}
    ran = subprocess.run([sys.executable, str(TESTS_DIR / "workers_portable.py"), live, stale],
                         cwd=portable_package, check=False, capture_output=True, text=True,
                         timeout=WAIT, env=env)
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout.splitlines()[-1])
    live_native, stale_native = found["natives"]
    assert found["dir"] == "/tmp/shmimage"  # not /dev/shm
    assert found["stale_file_while_alive"]
    assert found["listed_while_alive"] == sorted([live_native, stale_native])
    assert found["stale_file_after_kill"]  # nothing touched the name yet
    assert found["collected"] == [stale_native]
    assert not found["stale_file_after_gc"]
    assert found["live"] == [{"key": live, "size": 1234, "persistent": False}]
    assert found["live_file"] and not found["live_file_after_detach"]
    assert not os.path.exists(f"/dev/shm{live_native}")
