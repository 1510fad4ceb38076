#!/usr/bin/env bash
# benches/cluster_scaling.py over a PostgreSQL and a SeaweedFS started for this run by scripts/dev-cluster.sh
# (their own directory and ports) and stopped at the end, also on failure. Arguments go to the script,
# e.g. `bash benches/cluster_scaling.sh --before /path/to/old/faculty`.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACULTY_CLUSTER_DIR="${TMPDIR:-/tmp}/faculty-bench-cluster-$$"
export FACULTY_CLUSTER_PG_PORT="${FACULTY_BENCH_PG_PORT:-26432}"
export FACULTY_CLUSTER_PORT_BASE="${FACULTY_BENCH_PORT_BASE:-23000}"
trap 'bash scripts/dev-cluster.sh down' EXIT
eval "$(bash scripts/dev-cluster.sh up)"
PYTHONPATH=.ort:.ort/py python3 benches/cluster_scaling.py "$@"
