#!/usr/bin/env bash
# What a distillation job costs the server in memory: writes an npz of N 28x28 uint8 images (default
# 200,000 = 158 MB of pixels, as benches/upload_memory.sh writes them: random, every row labeled 0-9),
# uploads it to a release server, then for each job below restarts the server over the same state (so the
# upload's own peak does not count), submits the job over curl, waits for it and prints the server's peak
# RSS (`peak_resident_mb` of its /healthz: VmHWM, kept across the resets inference makes) and the job's
# time; then what a restart over that state holds. Stops by itself.
# Usage: bash benches/job_memory.sh [N] [BINARY]   (BINARY: another build to compare, e.g. an older one)
n=${1:-200000}
port=18096
source "$(dirname "$0")/server_bench.sh"
PYTHONPATH=.ort:.ort/py python3 - "$n" "$work" <<'PY'
import sys
import numpy as np
n, out = int(sys.argv[1]), sys.argv[2]
r = np.random.default_rng(0)
np.savez(f"{out}/images.npz", x=r.integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8),
         y=r.integers(0, 10, size=n))
PY
start
code=$(curl -s -o "$work/reply" -w '%{http_code}' -F file=@"$work/images.npz" localhost:$port/v1/datasets)
[ "$code" = 201 ] || { echo "upload answered $code: $(cat "$work/reply")"; exit 1; }
id=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['id'])" "$work/reply")
stop
echo "$n images ($(( $(stat -c %s "$work/images.npz") / 1048576 )) MB npz), dataset $id"
printf "%-72s %10s %10s %8s\n" job "idle MB" "peak MB" "time s"
for job in \
  '"method": "scratch", "student": "mlp:64", "config": {"max_epochs": 2}' \
  '"method": "faculty", "teacher": "mnist_cnn@1", "student": "mlp:64", "config": {"max_epochs": 2}' \
  '"method": "scratch", "student": "cnn:4:16", "config": {"max_epochs": 1}'; do
  start
  idle=$(peak)
  s=$(date +%s.%N)
  code=$(curl -s -o "$work/job" -w '%{http_code}' localhost:$port/v1/jobs \
    -H 'content-type: application/json' -d "{\"dataset_id\": \"$id\", $job}")
  [ "$code" = 201 ] || [ "$code" = 202 ] || { echo "job answered $code: $(cat "$work/job")"; exit 1; }
  jid=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['id'])" "$work/job")
  while :; do
    state=$(curl -s localhost:$port/v1/jobs/$jid | python3 -c "import json, sys; j = json.load(sys.stdin); print(j['state'], j.get('error') or '')")
    case "$state" in succeeded*) break ;; failed*|cancelled*) echo "job $jid: $state"; exit 1 ;; esac
    sleep 0.5
  done
  secs=$(python3 -c "import time; print(round(time.time()-$s, 1))")
  printf "%-72s %10d %10d %8s\n" "$(echo "$job" | sed 's/"config": //; s/"//g')" "$idle" "$(peak)" "$secs"
  stop
done
# what a restart holds: sled keeps in memory what it holds, and teacher outputs of 1 MB or more are files
start
echo "restart after the jobs: $(resident) MB resident (start peak $(peak) MB); sled $(du -sm "$work/state/state.sled" | cut -f1) MB, output files $(du -sm "$work/state/outputs" 2>/dev/null | cut -f1 || echo 0) MB"
stop
