"""The leak checks themselves: a leaking test must fail, and be cleaned up."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from shmimage import NotFoundError, SharedMemory
from workers_memory import shm_path

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKY_TEST = """
from shmimage import SharedMemory

def test_leaks(unique_key):
    key = unique_key()
    with open("key.txt", "w") as f:
        f.write(key)
    with SharedMemory(key) as shm:
        shm.create(64, persistent=True)

def test_clean(unique_key):
    with SharedMemory(unique_key()) as shm:
        shm.create(64)
"""


def test_a_leaking_test_fails_and_is_cleaned_up(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*test leaked shared memory segments*"])
    key = (pytester.path / "key.txt").read_text()
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))
    with pytest.raises(NotFoundError):
        SharedMemory(key).attach()


FAILING_TEST = """
from shmimage import SharedMemory

def test_fails_mid_way(unique_key):
    key = unique_key()
    with open("key.txt", "w") as f:
        f.write(key)
    shm = SharedMemory(key)
    shm.create(64, persistent=True)
    assert False, "the test's own failure"
"""


def test_a_failed_test_is_cleaned_up_without_a_second_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_failing=FAILING_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    key = (pytester.path / "key.txt").read_text()
    assert not os.path.exists(shm_path(SharedMemory(key).native_key))
