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

html_theme = "furo"
html_title = f"shmimage {release}"
exclude_patterns = ["_build", "README.md"]

autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
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
