#!/usr/bin/env bash
# make test's second pass: the API, job, state-store and zoo-index tests again with faculty's state in PostgreSQL
# and its blobs in SeaweedFS's S3,
# over a PostgreSQL and a SeaweedFS started for this run by scripts/dev-cluster.sh (their own directory
# and ports, below the ephemeral range, so a developer's `dev-cluster.sh up` is left alone) and stopped at
# the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACULTY_CLUSTER_DIR="${TMPDIR:-/tmp}/faculty-test-cluster-$$"
export FACULTY_CLUSTER_PG_PORT="${FACULTY_TEST_PG_PORT:-25432}"
export FACULTY_CLUSTER_PORT_BASE="${FACULTY_TEST_PORT_BASE:-21000}"
trap 'bash scripts/dev-cluster.sh down' EXIT
eval "$(bash scripts/dev-cluster.sh up)"
# the tests give each server a schema and a blob prefix of its own; nothing else may use the bare URLs
export FACULTY_TEST_DATABASE_URL="$FACULTY_DATABASE_URL" FACULTY_TEST_BLOB_URL="$FACULTY_BLOB_URL"
unset FACULTY_DATABASE_URL FACULTY_BLOB_URL
cargo test --no-fail-fast \
  --test state_store --test cluster --test api --test auth --test datasets --test students --test jobs --test cli \
  --test remote --test zoo_index "$@"
