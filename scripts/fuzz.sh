#!/usr/bin/env bash
# Fuzzes the OpenAPI spec against a real server with schemathesis: no generated
# request may get a 5xx. Starts its own database (unless MONGO_URI is set) and
# server on loopback, bounded in examples and time, and stops both.
#   scripts/fuzz.sh [MAX_EXAMPLES]      (default 30 per operation)
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${1:-30}
command -v schemathesis >/dev/null 2>&1 || python3 -m pip install -q schemathesis
# pip's console scripts land beside the interpreter, which may not be on PATH yet.
PATH="$PATH:$(python3 -c 'import os, sys; print(os.path.dirname(sys.executable))')"
cargo build --quiet --bin secret-manager

state=$(mktemp -d "${TMPDIR:-/tmp}/secret-manager-fuzz.XXXXXX")
server=""
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
  scripts/db.sh stop "$state/db" || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

uri=$(scripts/db.sh start "$state/db")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
token=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
env -i PATH="$PATH" HOME="$HOME" MONGO_URI="$uri" MONGO_DB=fuzz HOST=127.0.0.1 PORT="$port" GRPC_ENABLED=false \
  MASTER_KEY="$(head -c 32 /dev/urandom | base64)" CONFIG_FILE=/dev/null \
  TOKEN_fuzz="$token" ALLOW_fuzz='*' AUTH_FAILURE_BURST=0 LOG_FORMAT=json RUST_LOG=warn \
  "${CARGO_TARGET_DIR:-target}"/debug/secret-manager serve >"$state/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready" && break
  sleep 0.2
done

# GET /api/events answers an endless event stream, which schemathesis would
# read until its timeout; its bad inputs are tested in tests/api/events.rs.
timeout 600 schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --checks not_a_server_error --max-examples "$examples" --workers 2 --seed 1 \
  --exclude-path /api/events \
  -H "X-Service: fuzz" -H "X-Token: $token"
if grep -q "$token" "$state/server.log"; then
  echo "fuzz.sh: the token appeared in the server log" >&2
  exit 1
fi
