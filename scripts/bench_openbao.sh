#!/usr/bin/env bash
# The service beside OpenBao (the open fork of Vault), side by side in one run.
#
#   scripts/bench_openbao.sh [DURATION_SECS] [ROUNDS] [CONCURRENCY]   (defaults 5, 3, 64)
#
# One release replica (scripts/cluster.sh up 1, local database unless MONGO_URI
# is set) and OpenBao (scripts/openbao.sh: KV v2 on raft storage, a file audit
# device) on the same machine, driven by the same harness with the same 64-byte
# values: `bench --transport http-named` (POST /api/secrets, GET and PATCH
# /api/secrets/bench/<name>) and `bench --transport openbao` (POST and GET
# /v1/secret/data/bench/<name>). For each of read (fetch among 1,000 seeded
# names), write (a new name) and update (a new version of a seeded name) the
# two alternate ROUNDS times; medians, the service / OpenBao ratio, and each
# process's peak RSS. Loopback only; every run is bounded by DURATION_SECS.
# Writes Markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-3}
CONCURRENCY=${3:-64}
BIN="${CARGO_TARGET_DIR:-target}/release/secret-manager"
export BIN
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench-openbao.$$"
export BAO_DIR="$CLUSTER_DIR/openbao"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101} BAO_PORT=${BAO_PORT:-18200}

cargo build --release --quiet --bin secret-manager
trap 'scripts/openbao.sh down >/dev/null 2>&1 || true; scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
scripts/cluster.sh up 1 >/dev/null 2>&1
scripts/openbao.sh up >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; . "$BAO_DIR/env"; set +a

run() { # who mode -> JSON line (tokens reach the harness through its environment)
  if [ "$1" = openbao ]; then
    VAULT_TOKEN="$BAO_TOKEN" "$BIN" bench --transport openbao --url "$BAO_ADDR" \
      --mode "$2" --seed 1000 --concurrency "$CONCURRENCY" --duration "$DURATION" --json
  else
    VAULT_TOKEN="$TOKEN_bench" "$BIN" bench --transport http-named --url "http://127.0.0.1:$BASE_PORT" \
      --service bench --mode "$2" --seed 1000 --concurrency "$CONCURRENCY" --duration "$DURATION" --json
  fi
}

echo "| op | OpenBao req/s | service req/s | service/OpenBao | OpenBao p99 ms | service p99 ms | p99 ratio | errors |"
echo "|---|---|---|---|---|---|---|---|"
for mode in fetch create update; do
  out="$CLUSTER_DIR/$mode.jsonl"
  : >"$out"
  for _ in $(seq 1 "$ROUNDS"); do
    run openbao "$mode" | sed 's/^/openbao /' >>"$out"
    run service "$mode" | sed 's/^/service /' >>"$out"
  done
  python3 - "$mode" "$out" <<'PY'
import json, statistics, sys
mode, path = sys.argv[1:3]
runs = {"openbao": [], "service": []}
for line in open(path):
    who, js = line.split(" ", 1)
    runs[who].append(json.loads(js))
def med(who, f): return statistics.median(f(r) for r in runs[who])
rb, rs = med("openbao", lambda r: r["requests_per_sec"]), med("service", lambda r: r["requests_per_sec"])
pb, ps = med("openbao", lambda r: r["latency_ms"]["p99"]), med("service", lambda r: r["latency_ms"]["p99"])
errs = sum(sum(r["errors"].values()) + r["mismatches"] for w in runs for r in runs[w])
name = {"fetch": "read", "create": "write (new name)", "update": "update (new version)"}[mode]
print(f"| {name} | {rb:.0f} | {rs:.0f} | {rs/rb:.2f} | {pb:.1f} | {ps:.1f} | {ps/pb:.2f} | {errs} |")
PY
done
rss() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
echo
echo "Peak RSS (VmHWM): OpenBao $(rss "$(cat "$BAO_DIR/pid")"), service $(rss "$(cat "$CLUSTER_DIR/replica-1.pid")")."
