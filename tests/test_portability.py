"""What the other platforms depend on that can be checked on this one: the
Windows names, the type stub against the compiled module, and the files a
wheel must carry."""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.resources
import inspect
import re
import sys
from types import ModuleType

import pytest
from shmimage import _shmcore
from shmimage.memory import SharedMemory, native_key_for

# shm_platform.h's SHMP_NAME_MAX: the longest native name the C layer takes.
NAME_MAX = _shmcore.NAME_MAX
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


def test_native_names_are_checked_by_the_core() -> None:
    # Windows's own rule is shm_win32.c's, tested by tests/c/test_win32.c.
    if sys.platform == "win32":
        pytest.skip("POSIX names only")
    assert NAME_MAX == 64
    _shmcore.check_name(native_key_for("QSharedMemoryExample"))
    _shmcore.check_name("/" + "x" * (NAME_MAX - 1))
    for bad in ("/" + "x" * NAME_MAX, "no-slash", "/a/b", "/", "/..", "/a\0b"):
        with pytest.raises(ValueError):
            _shmcore.check_name(bad)


@pytest.mark.parametrize("key", KEYS)
def test_posix_native_key_fits_macos(key: str) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX names only")
    native = native_key_for(key)
    assert re.fullmatch(r"/[A-Za-z0-9_]{1,29}", native), native  # macOS: 30 at most


MODULES = ["_shmcore", "_qtipc"]  # the compiled modules, each with its stub


def _stub(module: str) -> ast.Module:
    text = importlib.resources.files("shmimage").joinpath(f"{module}.pyi").read_text()
    return ast.parse(text)


def _is_typed_dict(node: ast.stmt) -> bool:
    return isinstance(node, ast.ClassDef) and any(
        isinstance(b, ast.Name) and b.id == "TypedDict" for b in node.bases
    )


def _stub_names(nodes: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if _is_typed_dict(node):
            continue  # a type for a result, not a member of the module
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            alias = isinstance(node.annotation, ast.Name) and node.annotation.id == "TypeAlias"
            if not alias:
                names.add(node.target.id)
    return names


def _public(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def _defined_in(module: ModuleType, name: str) -> bool:
    """Defined by the compiled module itself, not imported into it."""
    obj = getattr(module, name)
    if inspect.ismodule(obj):
        return False
    return getattr(obj, "__module__", None) in (None, module.__name__)


@pytest.mark.parametrize("module", MODULES)
def test_stub_is_installed_with_the_package(module: str) -> None:
    files = importlib.resources.files("shmimage")
    assert files.joinpath("py.typed").is_file()
    assert files.joinpath(f"{module}.pyi").is_file()


@pytest.mark.parametrize("module", MODULES)
def test_stub_matches_the_module(module: str) -> None:
    compiled = importlib.import_module(f"shmimage.{module}")
    declared = _public(_stub_names(_stub(module).body))
    real = _public({n for n in dir(compiled) if _defined_in(compiled, n)})
    assert declared - real == set(), "declared in the stub but missing"
    assert real - declared == set(), "in the module but not in the stub"


def _stub_classes(module: str) -> dict[str, ast.ClassDef]:
    return {
        n.name: n
        for n in _stub(module).body
        if isinstance(n, ast.ClassDef) and not _is_typed_dict(n)
    }


def _declared(classes: dict[str, ast.ClassDef], name: str) -> set[str]:
    """A stub class's public members, its stub bases' included."""
    node = classes[name]
    names = _public(_stub_names(node.body))
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            names |= _declared(classes, base.id)
    return names


def _provided_by_every_subclass(
    compiled: ModuleType, classes: dict[str, ast.ClassDef], name: str
) -> set[str]:
    """What a base may declare as an interface that its subclasses implement."""
    subs = [
        n for n, c in classes.items()
        if any(isinstance(b, ast.Name) and b.id == name for b in c.bases)
    ]
    members = [set(dir(getattr(compiled, n))) for n in subs]
    return set.intersection(*members) if members else set()


@pytest.mark.parametrize("module", MODULES)
def test_stub_classes_match(module: str) -> None:
    compiled = importlib.import_module(f"shmimage.{module}")
    classes = _stub_classes(module)
    for name in classes:
        declared = _declared(classes, name)
        real = _public(set(dir(getattr(compiled, name))))
        provided = _provided_by_every_subclass(compiled, classes, name)
        assert declared - real - provided == set(), f"{name}: declared but missing"
        assert real - declared == set(), f"{name}: not in the stub"
