#!/usr/bin/env bash
# A local MongoDB-compatible database for development and tests.
#
#   scripts/db.sh start STATE_DIR   start one (prints its MONGO_URI), or reuse MONGO_URI when set
#   scripts/db.sh stop STATE_DIR    stop the one started in STATE_DIR (a later start reuses its port and data)
#   scripts/db.sh install           install SecantusDB into the cache (done by start when needed)
#
# Without MONGO_URI, SecantusDB (a MongoDB-wire-compatible server, GPL-2.0, run
# as a separate process) is installed once into $SECRET_MANAGER_CACHE
# (default ~/.cache/secret-manager) and started on a free loopback port with
# its data under STATE_DIR/data.
set -euo pipefail

SECANTUS_VERSION="0.5.3-beta.193"
SECANTUS_PY_VERSION="0.7.0b3"
CACHE="${SECRET_MANAGER_CACHE:-$HOME/.cache/secret-manager}"
RS_ROOT="$CACHE/secantus-$SECANTUS_VERSION"
PY_ROOT="$CACHE/secantus-py-$SECANTUS_PY_VERSION"

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

log() { echo "db.sh: $*" >&2; }

server_binary() {
  if [ -x "$RS_ROOT/bin/secantusd-rs" ]; then
    echo "$RS_ROOT/bin/secantusd-rs"
  elif [ -x "$PY_ROOT/bin/secantusd-py" ]; then
    echo "$PY_ROOT/bin/secantusd-py"
  else
    return 1
  fi
}

install() {
  if server_binary >/dev/null; then
    return 0
  fi
  if ! command -v cmake >/dev/null 2>&1; then
    log "installing cmake (needed to build SecantusDB)"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq cmake >/dev/null
    else
      sudo apt-get update -qq && sudo apt-get install -y -qq cmake >/dev/null
    fi
  fi
  log "installing SecantusDB $SECANTUS_VERSION into $RS_ROOT (once; takes a few minutes)"
  mkdir -p "$RS_ROOT"
  if cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version \
      --locked --root "$RS_ROOT" >"$CACHE/secantus-install.log" 2>&1; then
    return 0
  fi
  log "cargo install failed (see $CACHE/secantus-install.log); trying the Python build"
  python3 -m venv "$PY_ROOT"
  "$PY_ROOT/bin/pip" install -q "SecantusDB==$SECANTUS_PY_VERSION"
  server_binary >/dev/null || { log "SecantusDB could not be installed"; exit 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
  local port=$1 pid=$2
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

start() {
  local dir=$1
  if [ -n "${MONGO_URI:-}" ]; then
    log "using MONGO_URI from the environment"
    mkdir -p "$dir" && : >"$dir/external"
    echo "$MONGO_URI"
    return 0
  fi
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    cat "$dir/uri"
    return 0
  fi
  install
  local bin port
  bin=$(server_binary)
  # A restart in the same STATE_DIR keeps its port, so clients reconnect by themselves.
  if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
  mkdir -p "$dir/data"
  echo "$port" >"$dir/port"
  rm -f "$dir/external"
  "$bin" --host 127.0.0.1 --port "$port" --storage-path "$dir/data" \
    --cache-size 256M --log-file-max 16MB >"$dir/db.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  if ! wait_for_port "$port" "$pid"; then
    log "SecantusDB did not start; last lines of $dir/db.log:"
    tail -n 20 "$dir/db.log" >&2 || true
    stop "$dir"
    exit 1
  fi
  echo "mongodb://127.0.0.1:$port" >"$dir/uri"
  log "SecantusDB (pid $pid) listening on 127.0.0.1:$port"
  cat "$dir/uri"
}

stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  local pid
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    log "stopped SecantusDB (pid $pid)"
  fi
  rm -f "$dir/pid" "$dir/uri"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || usage; start "$2" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  install) install ;;
  *) usage ;;
esac
