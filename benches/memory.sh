#!/usr/bin/env bash
# Server memory under a large zoo: builds a zoo of N teachers (default 200) from the bundled ones, each
# copy made distinct by a doc_string field appended to its protobuf (so every file has its own sha256 and
# session), starts a release server on loopback with a session budget, ranks every bundled task, and
# prints peak and current RSS against the memory budget. Current RSS is /proc/PID/status VmRSS; the peak is
# the server's own (GET /healthz peak_resident_mb), as the budget resets VmHWM to measure each model's runs.
# Stops by itself.
# Usage: bash benches/memory.sh [N] [--memory-budget-mb MB] [--session-memory-mb MB] [--max-sessions K]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}; shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/faculty/target}"
cargo build --release -q
bin=$CARGO_TARGET_DIR/release/faculty
work=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$n" "$work/zoo" <<'PY'
import os, shutil, sys
n, out = int(sys.argv[1]), sys.argv[2]
src = "zoo/teachers"
flat = sorted(f for f in os.listdir(src) if f.endswith(".onnx"))
os.makedirs(out)
for i in range(n):
    f = flat[i % len(flat)]
    data = open(os.path.join(src, f), "rb").read()
    doc = f"faculty memory bench copy {i}".encode()
    data += bytes([0x32, len(doc)]) + doc  # ModelProto.doc_string (field 6): last one wins
    name = f[:-5]
    open(os.path.join(out, f"{name}_copy{i:03d}.onnx"), "wb").write(data)
    card = os.path.join(src, f"{name}.card.json")
    if os.path.exists(card):
        shutil.copy(card, os.path.join(out, f"{name}_copy{i:03d}.card.json"))
PY
port=18099
"$bin" serve --zoo "$work/zoo" --data-dir "$work/state" --addr 127.0.0.1:$port "$@" > "$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do curl -sf localhost:$port/healthz > /dev/null && break; sleep 0.5; done
rss() {
  if [ "$1" = VmHWM ]; then
    curl -s localhost:$port/healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_resident_mb"])'
  else
    grep -E "^$1" /proc/$pid/status | awk '{print int($2/1024)}'
  fi
}
echo "teachers: $(curl -s localhost:$port/healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["teachers"])'), idle RSS $(rss VmRSS) MB (peak while indexing $(rss VmHWM) MB)"
for t in zoo/tasks/*.npz; do
  ds=$(curl -s -F file=@"$t" localhost:$port/v1/datasets | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  s=$(date +%s.%N)
  curl -s localhost:$port/v1/rankings -H 'content-type: application/json' -d "{\"dataset_id\": \"$ds\"}" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["results"]), "teachers ranked,", sum(1 for x in r["results"] if x["compatible"]), "compatible", end=", ")'
  echo "$(basename "$t"): $(python3 -c "import time; print(round(time.time()-$s,1))") s, RSS $(rss VmRSS) MB"
done
echo "after ranking every bundled task: RSS $(rss VmRSS) MB, peak $(rss VmHWM) MB (budget $(curl -s localhost:$port/healthz | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory_budget_mb"])') MB; settings: ${*:-defaults})"
