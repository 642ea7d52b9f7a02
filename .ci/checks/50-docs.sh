#!/usr/bin/env bash
# The documentation: installs the docs extra into the active venv, builds the
# HTML with warnings as errors, and runs every code example of the guides
# (sphinx.ext.doctest). No network at build time: no intersphinx inventories.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out" docs/generated' EXIT
pip install -q '.[docs]'
sphinx-build -q -W --keep-going -b html docs "$out/html"
sphinx-build -q -W --keep-going -b doctest docs "$out/doctest"
sed -n '/^Doctest summary/,$p' "$out/doctest/output.txt"
echo "docs built: $(find "$out/html" -name '*.html' | wc -l) pages"
