#!/usr/bin/env bash
# What a dataset upload costs the server in memory: writes three npz files (N 28x28 uint8 images, default
# 200,000 = 158 MB; the same bytes' worth of float32 and of float64 rows), then for each starts a fresh
# release server on loopback, uploads the file with curl and prints the server's peak RSS
# (`peak_resident_mb` of its /healthz, VmHWM kept across the resets inference makes; nothing else runs in
# it) and the upload's time; the uint8 server then ranks its images with the whole zoo (time, peak after
# it, size of its state directory). Stops by itself.
# Usage: bash benches/upload_memory.sh [N] [BINARY]   (BINARY: another build to compare, e.g. an older one)
n=${1:-200000}
port=18098
source "$(dirname "$0")/server_bench.sh"
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
printf "%-14s %10s %12s %12s %9s\n" file "file MB" "idle MB" "peak MB" "upload s"
rank_line=
for f in uint8 float32 float64; do
  rm -rf "$work/state"
  start
  idle=$(peak)
  s=$(date +%s.%N)
  code=$(curl -s -o "$work/reply" -w '%{http_code}' -F file=@"$work/$f.npz" localhost:$port/v1/datasets)
  secs=$(python3 -c "import time; print(round(time.time()-$s, 2))")
  [ "$code" = 201 ] || { echo "upload of $f.npz answered $code: $(cat "$work/reply")"; exit 1; }
  printf "%-14s %10d %12d %12d %9s\n" "$f.npz" $(( $(stat -c %s "$work/$f.npz") / 1048576 )) "$idle" "$(peak)" "$secs"
  if [ $f = uint8 ]; then
    # the same server ranks the images it was given with the whole zoo
    id=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['id'])" "$work/reply")
    s=$(date +%s.%N)
    code=$(curl -s -o "$work/ranking" -w '%{http_code}' localhost:$port/v1/rankings \
      -H 'content-type: application/json' -d "{\"dataset_id\": \"$id\"}")
    secs=$(python3 -c "import time; print(round(time.time()-$s, 2))")
    [ "$code" = 201 ] || { echo "ranking answered $code: $(head -c 300 "$work/ranking")"; exit 1; }
    rank_line="ranking $f.npz with the whole zoo: $secs s, peak $(peak) MB, state directory $(du -sm "$work/state" | cut -f1) MB, $(python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
print(r['labeled_rows'], 'of', r.get('sampled_from', {}).get('labeled_rows', r['labeled_rows']), 'labeled rows looked at')" "$work/ranking")"
  fi
  stop
done
echo "$rank_line"
