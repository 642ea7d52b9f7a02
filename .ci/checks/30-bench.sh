#!/usr/bin/env bash
# The repository's performance check: `shmimage bench --quick` with every
# optional peer installed must run to the end and write its JSON, and
# benchmarks/acceptance.py prints each target's verdict from it (met, met
# within noise, short). A quick run's verdicts are indicative, so they are
# printed, not enforced; a target without its figure fails the check.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pip install -q '.[bench]'
python -m shmimage bench --quick --json "$out/bench.json" --plot "$out/bench.png"
python benchmarks/acceptance.py "$out/bench.json"
