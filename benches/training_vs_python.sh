#!/usr/bin/env bash
# Runs the criterion training bench and the same epoch in PyTorch (CPU) in one run and prints both times and
# the ratio (faculty / PyTorch time: < 1 means faculty is faster). PyTorch comes from $TORCH_PYTHON, else
# the zoo builder's venv (zoo/.venv, see zoo/build.sh), else the torch version pinned in
# zoo/requirements.txt installed from PyPI into .bench/torch (about 3 GB with its CUDA libraries; PyPI is
# the index this project's machines reach).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BENCH_THREADS=${BENCH_THREADS:-2}
py=${TORCH_PYTHON:-zoo/.venv/bin/python}
if ! "$py" -c "import torch" 2>/dev/null; then
  py=python3
  if ! PYTHONPATH=.bench/torch python3 -c "import torch" 2>/dev/null; then
    pin=$(grep -E '^torch==' zoo/requirements.txt)
    echo "installing $pin from PyPI into .bench/torch (once)" >&2
    if ! python3 -m pip install -q --disable-pip-version-check --target .bench/torch "$pin" "numpy<3"; then
      echo "PyTorch is missing and '$pin' could not be installed from PyPI: set TORCH_PYTHON to a python" \
           "with torch, or run zoo/build.sh (it makes zoo/.venv)" >&2
      exit 1
    fi
  fi
  export PYTHONPATH=.bench/torch
fi
cargo bench --bench training -- --noplot >&2
target=${CARGO_TARGET_DIR:-target}
torch_json=$("$py" benches/training_python.py)
python3 - "$target" "$torch_json" <<'PY'
import json, sys
target, py = sys.argv[1], json.loads(sys.argv[2])
t = json.load(open(f"{target}/criterion/training/mlp_784_256_10_epoch/new/estimates.json"))["median"]["point_estimate"] * 1e-9
print("| what | faculty (burn flex) | PyTorch %s CPU | faculty / PyTorch time | goal |" % py["torch"])
print("|---|---:|---:|---:|---|")
print(f"| one epoch, MLP 784-256-10, 10,000 rows, batch 128, AdamW | {t*1e3:.1f} ms | {py['epoch']*1e3:.1f} ms | {t/py['epoch']:.2f} | <= 1.0 |")
PY
