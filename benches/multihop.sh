#!/usr/bin/env bash
# Multihop benchmark: on every ground-truth task (few labeled shots + an unlabeled pool, the ranking's
# teacher), tiny students (tree:4, mlp:2) distilled 1-hop (faculty; auto = the best of kd / faculty /
# transfer on the job's selection; auto+auto = the best of those under no weighting, ProfWeight and
# SRatio: the issue's best-of-five 1-hop baseline), by multihop over the same (multihop+auto), and with
# fixed ProfWeight / SRatio weights, over DRAWS draws of the labeled shots; test accuracy of the exported
# ONNX students on the tasks' held-out rows, paired by draw.
# Writes .bench/multihop/<student>.json and prints the markdown tables README shows.
# Usage: bash benches/multihop.sh [DRAWS]   (default 5; about an hour on 2 cores, most of it mlp:2's
# auto+auto and multihop+auto)
# LABELED=1200 runs the many-labels regime instead: 1,200 labeled rows per draw sampled from each task's
# rows, 500 others as the pool (tasks with too few rows are left out), into .bench/multihop/labeled_1200.
# POOL=5000 gives every draw up to 5,000 of its task's other rows as its unlabeled pool (instead of the
# draw's own, or 500 with LABELED), into .bench/multihop/pool_5000.
# MULTIHOP='{"max_time_factor": 0}' gives the multihop runs these settings (JSON, as `distill --multihop`)
# instead of the defaults, into .bench/multihop/.../custom.
# The six original ground-truth tasks (the README's table); TASKS=all (or a comma list) for others: the
# ground truth has 19 tasks since ranking v2, about three times as long.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DRAWS="${1:-5}"
cargo build --release -q
out=.bench/multihop
extra=()
if [ -n "${LABELED:-}" ]; then
  out=".bench/multihop/labeled_$LABELED"
  extra=(--labeled "$LABELED")
fi
if [ -n "${POOL:-}" ]; then
  out="$out/pool_$POOL"
  extra+=(--pool "$POOL")
fi
if [ -n "${MULTIHOP:-}" ]; then
  out="$out/custom"
  extra+=(--multihop "$MULTIHOP")
fi
mkdir -p "$out"
bin="${CARGO_TARGET_DIR:-target}/release/faculty"
TASKS="${TASKS:-mnist_10way,mnist_59_5way,fashion_clothing_6way,fashion_3way_coarse,digits_upsampled,letters_26way}"
scope=(--tasks "$TASKS")
[ "$TASKS" = all ] && scope=()
run() { # student methods (STUDENTS="mlp:2" runs one student, METHODS="auto+auto,multihop+auto" fewer methods)
  [[ " ${STUDENTS:-tree:4 mlp:2} " == *" $1 "* ]] || return 0
  "$bin" eval-distill --student "$1" --methods "${METHODS:-$2}" --draws "$DRAWS" "${scope[@]}" "${extra[@]}" \
    --json > "$out/${1//:/_}.json"
}
run tree:4 faculty,auto,auto+auto,multihop+auto,faculty+profweight,faculty+sratio
run mlp:2 faculty,transfer,auto,auto+auto,multihop+auto,faculty+profweight,faculty+sratio
python3 benches/multihop_table.py "$out"/*.json
