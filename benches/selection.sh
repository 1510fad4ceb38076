#!/usr/bin/env bash
# Selection benchmark: does cross-validation over the labeled rows choose better than the 20% validation
# split? On the ground-truth tasks (few labeled shots + an unlabeled pool, the ranking's teacher), `auto`
# (the best of kd / faculty / transfer, and scratch when it wins) is run with the default selection
# (5-fold cross-validation) and with cv_folds 0 (the validation split), beside each method alone, over
# DRAWS draws; every candidate's test accuracy on the tasks' held-out rows tells how often each picked
# the best one. Writes .bench/selection/{cv,split}.json and prints the README's table.
# Usage: bash benches/selection.sh [DRAWS]   (default 5; STUDENT=mlp:256, TASKS as in multihop.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DRAWS="${1:-5}"
STUDENT="${STUDENT:-mlp:256}"
cargo build --release -q
out=.bench/selection/${STUDENT//:/_}
mkdir -p "$out"
bin="${CARGO_TARGET_DIR:-target}/release/faculty"
TASKS="${TASKS:-mnist_10way,mnist_59_5way,fashion_clothing_6way,fashion_3way_coarse,digits_upsampled,letters_26way}"
scope=(--tasks "$TASKS")
[ "$TASKS" = all ] && scope=()
"$bin" eval-distill --student "$STUDENT" --methods kd,faculty,transfer,auto --draws "$DRAWS" "${scope[@]}" \
  --json > "$out/cv.json"
"$bin" eval-distill --student "$STUDENT" --methods auto --draws "$DRAWS" "${scope[@]}" \
  --config '{"cv_folds": 0}' --json > "$out/split.json"
python3 benches/selection_table.py "$out/cv.json" "$out/split.json"
