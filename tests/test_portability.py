"""What the other platforms depend on that can be checked on this one: the
Windows names, the type stub against the compiled module, and the files a
wheel must carry."""
from __future__ import annotations

import ast
import hashlib
import importlib.resources
import inspect
import re
import sys

import pytest
from shmimage import _shmcore, memory
from shmimage.memory import SharedMemory, native_key_for

# shm_platform.h's SHMP_NAME_MAX: the longest native name the C layer takes.
NAME_MAX = 64
KEYS = ["one", "QSharedMemoryExample", "Noël", "Nol", "日本語のキー", "o/e", "a\\b", "a" * 1000]


@pytest.fixture
def on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")


@pytest.mark.parametrize("key", KEYS)
def test_windows_native_key(on_windows: None, key: str) -> None:
    native = native_key_for(key)
    assert native == "Local\\shmimage_" + hashlib.sha1(key.encode()).hexdigest()
    assert len(native) <= NAME_MAX
    assert native.count("\\") == 1  # only the namespace's separator
    assert SharedMemory(key).native_key == native


def test_windows_native_keys_are_distinct(on_windows: None) -> None:
    assert len({native_key_for(k) for k in KEYS}) == len(KEYS)


def test_windows_native_key_is_accepted(on_windows: None) -> None:
    memory._check_native_key(native_key_for("QSharedMemoryExample"))
    with pytest.raises(ValueError):
        memory._check_native_key("Local\\" + "x" * NAME_MAX)


@pytest.mark.parametrize("key", KEYS)
def test_posix_native_key_fits_macos(key: str) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX names only")
    native = native_key_for(key)
    assert re.fullmatch(r"/[A-Za-z0-9_]{1,29}", native), native  # macOS: 30 at most


def _stub() -> ast.Module:
    text = importlib.resources.files("shmimage").joinpath("_shmcore.pyi").read_text()
    return ast.parse(text)


def _stub_names(nodes: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            alias = isinstance(node.annotation, ast.Name) and node.annotation.id == "TypeAlias"
            if not alias:
                names.add(node.target.id)
    return names


def _public(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_stub_is_installed_with_the_package() -> None:
    files = importlib.resources.files("shmimage")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath("_shmcore.pyi").is_file()


def _defined_here(name: str) -> bool:
    """Defined by the compiled module itself, not imported into it."""
    obj = getattr(_shmcore, name)
    if inspect.ismodule(obj):
        return False
    return getattr(obj, "__module__", None) in (None, "shmimage._shmcore")


def test_stub_matches_the_module() -> None:
    declared = _public(_stub_names(_stub().body)) - {"ProbeInfo"}  # probe()'s result type
    real = _public({n for n in dir(_shmcore) if _defined_here(n)})
    assert declared - real == set(), "declared in the stub but missing"
    assert real - declared == set(), "in the module but not in the stub"


@pytest.mark.parametrize("cls", ["Segment", "FrameStore"])
def test_stub_class_matches(cls: str) -> None:
    node = next(n for n in _stub().body if isinstance(n, ast.ClassDef) and n.name == cls)
    declared = _public(_stub_names(node.body))
    real = _public(set(dir(getattr(_shmcore, cls))))
    assert declared - real == set(), "declared but missing"
    assert real - declared == set(), "undeclared"
