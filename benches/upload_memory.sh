#!/usr/bin/env bash
# What a dataset upload costs the server in memory: writes three npz files (N 28x28 uint8 images, default
# 200,000 = 158 MB; the same bytes' worth of float32 and of float64 rows), then for each starts a fresh
# release server on loopback, uploads the file with curl and prints the server's peak RSS
# (`peak_resident_mb` of its /healthz, VmHWM kept across the resets inference makes; nothing else runs in
# it) and the upload's time; the uint8 server then ranks its images with the whole zoo (time, peak after
# it, size of its state directory). Stops by itself.
# Usage: bash benches/upload_memory.sh [N] [BINARY]   (BINARY: another build to compare, e.g. an older one)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/faculty/target}"
if [ -n "${2:-}" ]; then bin=$2; else cargo build --release -q; bin=$CARGO_TARGET_DIR/release/faculty; fi
bash scripts/setup.sh > /dev/null
export ORT_DYLIB_PATH="$PWD/.ort/onnxruntime/capi/libonnxruntime.so.1.31.1"
work=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
PYTHONPATH=.ort:.ort/py python3 - "$n" "$work" <<'PY'
import sys
import numpy as np
n, out = int(sys.argv[1]), sys.argv[2]
r = np.random.default_rng(0)
d = 784
np.savez(f"{out}/uint8.npz", x=r.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8),
         y=r.integers(0, 10, size=n))
np.savez(f"{out}/float32.npz", x=r.random((n // 4, d), dtype=np.float32), y=r.integers(0, 10, size=n // 4))
np.savez(f"{out}/float64.npz", x=r.random((n // 8, d)), y=r.integers(0, 10, size=n // 8))
PY
port=18098
# the process's own peak: the kernel's VmHWM is reset whenever inference measures a batch's peak
hwm() { curl -s localhost:$port/healthz | python3 -c "import json, sys; print(json.load(sys.stdin)['peak_resident_mb'])"; }
printf "%-14s %10s %12s %12s %9s\n" file "file MB" "idle MB" "peak MB" "upload s"
rank_line=
for f in uint8 float32 float64; do
  rm -rf "$work/state"
  "$bin" serve --zoo zoo/teachers --data-dir "$work/state" --addr 127.0.0.1:$port > "$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do curl -sf localhost:$port/healthz > /dev/null && break; sleep 0.5; done
  idle=$(hwm)
  s=$(date +%s.%N)
  code=$(curl -s -o "$work/reply" -w '%{http_code}' -F file=@"$work/$f.npz" localhost:$port/v1/datasets)
  secs=$(python3 -c "import time; print(round(time.time()-$s, 2))")
  [ "$code" = 201 ] || { echo "upload of $f.npz answered $code: $(cat "$work/reply")"; exit 1; }
  printf "%-14s %10d %12d %12d %9s\n" "$f.npz" $(( $(stat -c %s "$work/$f.npz") / 1048576 )) "$idle" "$(hwm)" "$secs"
  if [ $f = uint8 ]; then
    # the same server ranks the images it was given with the whole zoo
    id=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['id'])" "$work/reply")
    s=$(date +%s.%N)
    code=$(curl -s -o "$work/ranking" -w '%{http_code}' localhost:$port/v1/rankings \
      -H 'content-type: application/json' -d "{\"dataset_id\": \"$id\"}")
    secs=$(python3 -c "import time; print(round(time.time()-$s, 2))")
    [ "$code" = 201 ] || { echo "ranking answered $code: $(head -c 300 "$work/ranking")"; exit 1; }
    rank_line="ranking $f.npz with the whole zoo: $secs s, peak $(hwm) MB, state directory $(du -sm "$work/state" | cut -f1) MB, $(python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
print(r['labeled_rows'], 'of', r.get('sampled_from', {}).get('labeled_rows', r['labeled_rows']), 'labeled rows looked at')" "$work/ranking")"
  fi
  kill $pid; wait $pid 2>/dev/null || true; pid=
done
echo "$rank_line"
