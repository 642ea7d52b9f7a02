"""Sphinx configuration of shmimage's documentation.

Built with no network: no intersphinx inventories are fetched. The API
reference comes from the installed package's docstrings (numpydoc style).
"""
from __future__ import annotations

import shmimage

project = "shmimage"
author = "the shmimage authors"
copyright = "the shmimage authors"
release = shmimage.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
]

# `name` in docstrings links to the object when it is one (numpy's convention),
# else shows as code.
default_role = "autolink"
templates_path = ["_templates"]  # class pages without an empty __init__ entry
# Dataclasses and named tuples describe their fields in an Attributes section:
# their class pages list no field a second time.
autosummary_context = {"field_classes": [
    "shmimage.FrameInfo", "shmimage.Frame", "shmimage.net.Stats",
]}
html_theme = "furo"
html_title = f"shmimage {release}"
exclude_patterns = ["_build", "README.md"]

autosummary_generate = True
# Members inherited from shmimage's own bases are documented (SharedMemory's
# lock/unlock live on its compiled base); those of Python's types are not.
autodoc_default_options = {
    "members": True, "undoc-members": True, "member-order": "bysource",
    "inherited-members": "object,BaseException,Exception,OSError,ValueError,int,tuple,Enum,IntEnum,ReprEnum",
}
autodoc_typehints = "signature"
# numpydoc lists members through autosummary tables of its own; autodoc's
# member listing is enough and avoids documenting each member twice.
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

# Every doctest block runs in a fresh namespace with numpy, shmimage and a key
# no other process on the machine uses.
doctest_global_setup = """
import os
import secrets
import numpy as np
import shmimage
from shmimage import SharedImage, SharedMemory
key = f"docs-{os.getpid()}-{secrets.token_hex(4)}"
"""


def _skip_builtin_members(app: object, what: str, name: str, obj: object, skip: bool,
                          options: object) -> bool | None:
    """Leave out what Python's own types define (int.bit_length on ErrorCode,
    tuple.count on Frame): autosummary's tables list inherited members too."""
    if type(obj).__name__ == "_tuplegetter":
        return True  # a named tuple's field: its class's Attributes section has it
    owner = getattr(obj, "__objclass__", None)
    if owner is not None and owner.__module__ == "builtins":
        return True
    bound_to = getattr(obj, "__self__", None)  # a classmethod: ErrorCode.from_bytes
    if isinstance(bound_to, type):
        owners = [c for c in bound_to.__mro__ if name.rpartition(".")[2] in vars(c)]
        if owners and owners[0].__module__ == "builtins":
            return True
    return None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_builtin_members)  # type: ignore[attr-defined]
