#!/usr/bin/env bash
# Runs the criterion inference bench and Python onnxruntime on the same inputs, in one run, and prints
# samples/s for both and the ratio (faculty / Python; > 1 means faculty is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BENCH_THREADS=${BENCH_THREADS:-2}
if ! PYTHONPATH=.ort:.bench/py python3 -c "import numpy" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --target .bench/py "numpy<3"
fi
cargo bench --bench inference -- --noplot >&2
target=${CARGO_TARGET_DIR:-target}
py=$(PYTHONPATH=.ort:.bench/py python3 benches/python_inference.py)
python3 - "$target" "$py" <<'PY'
import json, sys
target, py = sys.argv[1], json.loads(sys.argv[2])
print(f"{'teacher':8} {'batch':>6} {'faculty samples/s':>18} {'python samples/s':>17} {'ratio':>6}")
for key in py:
    kind, b = key.split("/")
    est = json.load(open(f"{target}/criterion/inference/{kind}/{b}/new/estimates.json"))
    ns = est["median"]["point_estimate"]
    rust = int(b) / (ns * 1e-9)
    print(f"{kind:8} {b:>6} {rust:>18,.0f} {py[key]:>17,.0f} {rust / py[key]:>6.2f}")
PY
