#!/usr/bin/env bash
# HTTP beside gRPC on the same work, side by side in one run.
#
#   scripts/bench_transports.sh [DURATION_SECS] [ROUNDS] [CONCURRENCY]   (defaults 5, 3, 64)
#
# One release replica (scripts/cluster.sh up 1, on a local database unless
# MONGO_URI is set). For fetch and create, alternates ROUNDS times between
# `bench --transport http-named` (POST /api/secrets, GET /api/secrets/bench/<id>)
# and `bench --transport grpc` (PutSecret / GetSecret on the same names), and
# reports medians and the gRPC / HTTP ratio. Loopback only; every run is
# bounded by DURATION_SECS. Writes Markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-3}
CONCURRENCY=${3:-64}
BIN="${CARGO_TARGET_DIR:-target}/release/secret-manager"
export BIN
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench-transports.$$"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101}

cargo build --release --quiet --bin secret-manager
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
scripts/cluster.sh up 1 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a

run() { # transport mode -> JSON line
  # The token reaches the harness through its environment, never a command line.
  VAULT_TOKEN="$TOKEN_bench" "$BIN" bench --transport "$1" --mode "$2" \
    --url "http://127.0.0.1:$BASE_PORT" --grpc-url "http://127.0.0.1:$((BASE_PORT + 1000))" \
    --service bench --concurrency "$CONCURRENCY" --duration "$DURATION" --json
}

echo "| op | HTTP req/s | gRPC req/s | gRPC/HTTP | HTTP p99 ms | gRPC p99 ms | p99 ratio | errors |"
echo "|---|---|---|---|---|---|---|---|"
for mode in fetch create; do
  out="$CLUSTER_DIR/$mode.jsonl"
  : >"$out"
  for _ in $(seq 1 "$ROUNDS"); do
    run http-named "$mode" | sed 's/^/http /' >>"$out"
    run grpc "$mode" | sed 's/^/grpc /' >>"$out"
  done
  python3 - "$mode" "$out" <<'PY'
import json, statistics, sys
mode, path = sys.argv[1:3]
runs = {"http": [], "grpc": []}
for line in open(path):
    who, js = line.split(" ", 1)
    runs[who].append(json.loads(js))
def med(who, f): return statistics.median(f(r) for r in runs[who])
rh, rg = med("http", lambda r: r["requests_per_sec"]), med("grpc", lambda r: r["requests_per_sec"])
ph, pg = med("http", lambda r: r["latency_ms"]["p99"]), med("grpc", lambda r: r["latency_ms"]["p99"])
errs = sum(sum(r["errors"].values()) + r["mismatches"] for w in runs for r in runs[w])
print(f"| {mode} | {rh:.0f} | {rg:.0f} | {rg/rh:.2f} | {ph:.1f} | {pg:.1f} | {pg/ph:.2f} | {errs} |")
PY
done
