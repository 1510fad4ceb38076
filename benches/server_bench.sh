# Sourced by the memory benches that drive a release server over loopback (benches/upload_memory.sh,
# benches/job_memory.sh): picks the binary (the second argument, else a fresh release build), sets up ONNX
# Runtime, makes a work directory removed on exit, and gives start / stop / peak for a server over
# "$work/state" on port $port.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/faculty/target}"
if [ -n "${2:-}" ]; then bin=$2; else cargo build --release -q; bin=$CARGO_TARGET_DIR/release/faculty; fi
bash scripts/setup.sh > /dev/null
export ORT_DYLIB_PATH="$PWD/.ort/onnxruntime/capi/libonnxruntime.so.1.31.1"
work=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
start() {
  "$bin" serve --zoo zoo/teachers --data-dir "$work/state" --addr 127.0.0.1:$port > "$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do curl -sf localhost:$port/healthz > /dev/null && break; sleep 0.5; done
}
stop() { kill $pid; wait $pid 2>/dev/null || true; pid=; }
# the process's own peak, MB: the kernel's VmHWM is reset whenever inference measures a batch's peak, and
# /healthz keeps the highest mark across the resets
peak() { curl -s localhost:$port/healthz | python3 -c "import json, sys; print(json.load(sys.stdin)['peak_resident_mb'])"; }
# its resident memory now, MB
resident() { curl -s localhost:$port/healthz | python3 -c "import json, sys; print(json.load(sys.stdin)['resident_mb'])"; }
