"""Every public name of shmimage, shmimage.qt and shmimage.net has a numpydoc
docstring: Parameters naming exactly the signature's parameters, Returns (or
Yields) unless it returns None, Raises, and an Examples section.

Routines are the package's functions and the public methods of its public
classes, the compiled base classes' included (`SharedMemory.lock` is
`SegmentHolder.lock`). Classes document their constructor's parameters
(Parameters, or Attributes for named tuples) and have an example. Properties
need a docstring. The examples themselves run in the docs' doctest build.
"""
from __future__ import annotations

import ast
import enum
import importlib
import inspect
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from numpydoc.docscrape import NumpyDocString

pytest.importorskip("zmq", reason="shmimage.net needs pyzmq (the net extra)")

MODULES = ("shmimage", "shmimage.qt", "shmimage.net")

# Routines that raise nothing a caller can act on: a Raises section there
# would have to invent one.
RAISES_NOTHING = {
    "shmimage.SharedImage.detach",        # "never raises BufferError and returns at once"
    "shmimage.SharedMemory.isAttached",   # Qt's spelling of a property
    "shmimage.Subscription.close",        # idempotent, from any thread
    "shmimage.qt.QtSharedImage.detach",   # leaves even when Qt's lock is stuck
    "shmimage.net.Server.stop",           # sets an event: safe in a signal handler
    "shmimage.net.Relay.stop",
    "shmimage.net.Stats.snapshot",
}


def _ours(cls: type) -> Iterator[type]:
    """`cls` and its bases that belong to shmimage (not object, Exception, ...)."""
    for base in cls.__mro__:
        if base.__module__.split(".")[0] == "shmimage":
            yield base


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    seen: set[str] = set()
    for base in _ours(cls):
        for name, value in vars(base).items():
            if name.startswith("_") or name in seen:
                continue
            if issubclass(cls, enum.Enum) and isinstance(value, cls):
                continue  # enum members are values
            seen.add(name)
            yield name, value


def public() -> Iterator[tuple[str, str, Any]]:
    """(path, kind, object) for every public name: kind is class, routine or property."""
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            path = f"{module_name}.{name}"
            if inspect.isclass(obj):
                yield path, "class", obj
                for member, value in _members(obj):
                    if isinstance(value, (staticmethod, classmethod)):
                        yield f"{path}.{member}", "routine", value.__func__
                    elif inspect.isroutine(value):
                        yield f"{path}.{member}", "routine", value
                    elif inspect.isdatadescriptor(value):
                        yield f"{path}.{member}", "property", value
            elif inspect.isroutine(obj):
                yield path, "routine", obj


def parsed(obj: Any) -> NumpyDocString:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown section is an error here
        return NumpyDocString(inspect.getdoc(obj) or "")


def documented(entries: list[Any]) -> list[str]:
    """Names in a Parameters section; ``shape, dtype`` documents both."""
    names = []
    for entry in entries:
        names += [n.strip().lstrip("*") for n in entry.name.split(",") if n.strip()]
    return names


def stub_return(obj: Any) -> str | None:
    """A compiled method's return annotation, from the module's .pyi stub."""
    module = importlib.import_module(obj.__objclass__.__module__)
    tree = ast.parse(Path(module.__file__).with_name(module.__name__.split(".")[-1] + ".pyi")
                     .read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == obj.__objclass__.__name__:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == obj.__name__:
                    return ast.unparse(item.returns) if item.returns else None
    return None


def signature_names(obj: Any) -> tuple[list[str], Any]:
    sig = inspect.signature(obj)
    names = [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")]
    returns = sig.return_annotation
    if returns is inspect.Signature.empty and hasattr(obj, "__objclass__"):
        returns = stub_return(obj)
    return names, returns


def routine_problems(obj: Any, path: str = "") -> list[str]:
    doc, problems = parsed(obj), []
    try:
        names, returns = signature_names(obj)
    except (TypeError, ValueError):
        return ["no signature (compiled without embedsignature/binding?)"]
    if documented(doc["Parameters"]) != names:
        problems.append(f"Parameters document {documented(doc['Parameters'])}, "
                        f"the signature has {names}")
    returns_none = returns in (None, "None") or returns is type(None)
    if not returns_none and not (doc["Returns"] or doc["Yields"]):
        problems.append("no Returns section")
    if not doc["Raises"] and path not in RAISES_NOTHING:
        problems.append("no Raises section")
    if not doc["Examples"]:
        problems.append("no Examples section")
    return problems


def class_problems(cls: type) -> list[str]:
    doc, problems = parsed(cls), []
    if not doc["Summary"]:
        problems.append("no summary line")
    if not doc["Examples"]:
        problems.append("no Examples section")
    if issubclass(cls, (BaseException, enum.Enum)):
        return problems  # constructed by the package, not by users
    try:
        names, _ = signature_names(cls)
    except (TypeError, ValueError):
        return problems + ["no constructor signature"]
    given = documented(doc["Parameters"]) + documented(doc["Attributes"])
    missing = [n for n in names if n not in given]
    if missing:
        problems.append(f"constructor parameters not documented: {missing}")
    return problems


NAMES = list(public())


def test_the_walk_finds_the_public_api() -> None:
    paths = {path for path, _, _ in NAMES}
    for expected in ("shmimage.SharedImage.publish", "shmimage.SharedMemory.lock",
                     "shmimage.SharedMemory.unlock", "shmimage.Subscription.next_async",
                     "shmimage.qt.QtSharedImage.read", "shmimage.net.serve"):
        assert expected in paths


@pytest.mark.parametrize(("path", "kind", "obj"), NAMES, ids=[p for p, _, _ in NAMES])
def test_public_name_is_documented(path: str, kind: str, obj: Any) -> None:
    if kind == "property":
        problems = [] if inspect.getdoc(obj) else ["no docstring"]
    elif kind == "class":
        problems = class_problems(obj)
    else:
        problems = routine_problems(obj, path)
    assert not problems, f"{path}: " + "; ".join(problems)


def test_every_exemption_is_a_public_routine() -> None:
    assert RAISES_NOTHING <= {path for path, kind, _ in NAMES if kind == "routine"}


def test_the_checker_catches_a_bare_docstring() -> None:
    def bare(x: int) -> int:
        """Add one."""
        return x + 1
    assert routine_problems(bare) == [
        "Parameters document [], the signature has ['x']", "no Returns section",
        "no Raises section", "no Examples section"]
