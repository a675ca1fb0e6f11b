#!/usr/bin/env bash
# N replicas of the service on loopback behind one HAProxy: the local stand-in
# for the Swarm ingress (same variables and health checks as stack.yml).
#
#   scripts/cluster.sh up N      start N replicas and the balancer on $LB_PORT (default 8000)
#   scripts/cluster.sh down      stop everything this script started
#   scripts/cluster.sh kill I    SIGKILL replica I (fault drills)
#   scripts/cluster.sh start I   start replica I again
#   scripts/cluster.sh status    replicas, ports and pids
#
# Every replica inherits the caller's environment (MONGO_URI, MASTER_KEY,
# TOKEN_*, CONFIG_FILE, ...). Without MONGO_URI the local database is started
# (scripts/db.sh); without a master key one is generated for the cluster; with
# no service identity, service `bench` (shorthand `*`) gets a generated token.
# The generated settings are in $CLUSTER_DIR/env (source it to use them).
# CLUSTER_DIR (default .run/cluster), BASE_PORT (default 18001; replica i serves
# HTTP on BASE_PORT+i-1 and gRPC 1000 above it unless GRPC_ENABLED=false), BIN (default
# target/release/secret-manager, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${CLUSTER_DIR:-.run/cluster}"
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
LB_PORT="${LB_PORT:-8000}"
BASE_PORT="${BASE_PORT:-18001}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/secret-manager}"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
log() { echo "cluster.sh: $*" >&2; }

wait_ready() {
  local url=$1 pid=${2:-}
  for _ in $(seq 1 150); do
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.2
  done
  return 1
}

start_replica() {
  local i=$1 port=$((BASE_PORT + $1 - 1))
  (
    set -a
    # shellcheck disable=SC1091
    . "$DIR/env"
    set +a
    HOST=127.0.0.1 PORT=$port GRPC_PORT=$((port + 1000)) exec "$BIN" serve
  ) >>"$DIR/replica-$i.log" 2>&1 &
  echo $! >"$DIR/replica-$i.pid"
  if ! wait_ready "http://127.0.0.1:$port/health/ready" "$(cat "$DIR/replica-$i.pid")"; then
    log "replica $i did not become ready; see $DIR/replica-$i.log"
    tail -n 5 "$DIR/replica-$i.log" >&2 || true
    return 1
  fi
  log "replica $i (pid $(cat "$DIR/replica-$i.pid")) ready on 127.0.0.1:$port"
}

write_haproxy() {
  local n=$1
  {
    cat <<CFG
global
  maxconn 8192
  pidfile $DIR/haproxy.pid

defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  # A request whose connection to a replica fails goes to another one.
  retries 3
  option redispatch
  option http-keep-alive

frontend vault
  bind 127.0.0.1:$LB_PORT
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /health/ready
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2
CFG
    for i in $(seq 1 "$n"); do
      echo "  server r$i 127.0.0.1:$((BASE_PORT + i - 1)) check"
    done
  } >"$DIR/haproxy.cfg"
}

up() {
  local n=$1
  [ "$n" -ge 1 ] 2>/dev/null || usage
  command -v haproxy >/dev/null || { log "haproxy is not installed (apt-get install haproxy)"; exit 1; }
  mkdir -p "$DIR"
  : >"$DIR/env"
  chmod 600 "$DIR/env"
  if [ -z "${MONGO_URI:-}" ]; then
    echo "MONGO_URI=$(scripts/db.sh start "$DIR/db")" >>"$DIR/env"
    : >"$DIR/started-db"
  fi
  if [ -z "${MASTER_KEY:-}${MASTER_KEY_FILE:-}" ]; then
    [ -f "$DIR/master_key" ] || (umask 077; head -c 32 /dev/urandom | base64 >"$DIR/master_key")
    echo "MASTER_KEY_FILE=$DIR/master_key" >>"$DIR/env"
  fi
  if [ -z "$(compgen -e TOKEN_ || true)" ] && [ -z "${CONFIG_FILE:-}" ]; then
    echo "ALLOWED_SERVICES=bench" >>"$DIR/env"
    echo "ALLOW_bench=*" >>"$DIR/env"
    echo "TOKEN_bench=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')" >>"$DIR/env"
    log "generated service 'bench'; its token is in $DIR/env"
  fi
  [ -x "$BIN" ] || cargo build --release --quiet --bin secret-manager
  echo "$n" >"$DIR/replicas"
  for i in $(seq 1 "$n"); do start_replica "$i"; done
  write_haproxy "$n"
  haproxy -f "$DIR/haproxy.cfg" -D
  wait_ready "http://127.0.0.1:$LB_PORT/health/ready" || { log "balancer not ready"; exit 1; }
  log "balancer on http://127.0.0.1:$LB_PORT in front of $n replicas"
}

stop_pid() {
  local file=$1 sig=${2:-TERM}
  [ -f "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  [ -d "$DIR" ] || return 0
  stop_pid "$DIR/haproxy.pid"
  for f in "$DIR"/replica-*.pid; do [ -e "$f" ] && stop_pid "$f"; done
  if [ -f "$DIR/started-db" ]; then
    scripts/db.sh stop "$DIR/db"
    rm -f "$DIR/started-db"
  fi
  log "stopped"
}

status() {
  for f in "$DIR"/replica-*.pid; do
    [ -e "$f" ] || continue
    local pid i
    pid=$(cat "$f"); i=${f##*replica-}; i=${i%.pid}
    if kill -0 "$pid" 2>/dev/null; then echo "replica $i pid $pid port $((BASE_PORT + i - 1)) up"; else echo "replica $i down"; fi
  done
}

case "${1:-}" in
  up) [ $# -eq 2 ] || usage; up "$2" ;;
  down) down ;;
  kill) [ $# -eq 2 ] || usage; stop_pid "$DIR/replica-$2.pid" KILL; log "killed replica $2" ;;
  start) [ $# -eq 2 ] || usage; start_replica "$2" ;;
  status) status ;;
  *) usage ;;
esac
