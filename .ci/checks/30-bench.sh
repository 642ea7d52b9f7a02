#!/usr/bin/env bash
# The benchmark suite with every optional peer installed: `bench --quick`
# must run to the end and write valid JSON (figures are not judged here).
set -euo pipefail
out=$(mktemp -d)
pip install -q '.[bench]'
python -m shmimage.bench --quick --json "$out/bench.json" --plot "$out/bench.png"
python - "$out/bench.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(f"bench --quick wrote valid JSON with {len(json.dumps(data))} characters")
PY
rm -rf "$out"
