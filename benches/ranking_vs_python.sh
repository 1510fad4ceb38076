#!/usr/bin/env bash
# Runs the criterion ranking/Sinkhorn bench and the Python reference (onnxruntime + numpy LEEP, POT
# sinkhorn_log) on the same inputs in one run, and prints times and ratios (Python / faculty: > 1 means
# faculty is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BENCH_THREADS=${BENCH_THREADS:-2}
if ! PYTHONPATH=.ort:.bench/py python3 -c "import numpy, ot" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --target .bench/py "numpy<3" "pot==0.9.5"
fi
cargo bench --bench ranking -- --noplot >&2
target=${CARGO_TARGET_DIR:-target}
py=$(PYTHONPATH=.ort:.bench/py python3 benches/ranking_python.py)
python3 - "$target" "$py" <<'PY'
import json, sys
target, py = sys.argv[1], json.loads(sys.argv[2])
def rust(name):
    return json.load(open(f"{target}/criterion/{name}/new/estimates.json"))["median"]["point_estimate"] * 1e-9
rows = [("ranking cold (the bundled zoo, 2,000 rows)", "ranking/cold", "ranking_cold", "faculty <= 0.8x Python"),
        ("ranking warm (outputs and scores cached)", "ranking/warm", None, "<= 50 ms"),
        ("ranking warm, every metric recomputed from cached outputs", "ranking/warm_rescore", None, "<= 50 ms"),
        ("Sinkhorn 100x100", "sinkhorn/100x100", "sinkhorn/100x100", ">= 3x faster"),
        ("Sinkhorn 10,000 x (10x10)", "sinkhorn/batch_10000x10x10", "sinkhorn/batch_10000x10x10", ">= 3x faster")]
print(f"| what | faculty | Python | faculty / Python time | goal |")
print(f"|---|---:|---:|---:|---|")
for label, r, p, goal in rows:
    t = rust(r)
    if p:
        print(f"| {label} | {t*1e3:.1f} ms | {py[p]*1e3:.1f} ms | {t/py[p]:.2f} | {goal} |")
    else:
        print(f"| {label} | {t*1e3:.1f} ms | - | - | {goal} |")
PY
