#!/usr/bin/env bash
# Measures the service against the database ceiling, side by side in one run.
#
#   scripts/bench.sh [DURATION_SECS] [ROUNDS]     (defaults 5 and 3)
#
# 1. the database ceiling (`secret-manager bench-db`: exactly the database work
#    of one fetch / one create, same driver, same concurrency),
# 2. one replica through the harness (`secret-manager bench`) at concurrency 64,
# 3. three replicas behind HAProxy (scripts/cluster.sh),
# alternating ceiling and service runs ROUNDS times and reporting medians and
# ratios; then a concurrency table (1, 16, 64, 256) and each replica's peak RSS;
# then one replica against the ceiling at 64 and 1 connections with the CPU
# per request of database and replica (scripts/bench_ceiling.sh), OpenBao
# beside the service (scripts/bench_openbao.sh) and the scale table, 1,000 to 100,000 secrets in one project (scripts/bench_scale.sh).
# Uses a local database (scripts/db.sh) unless MONGO_URI is set. Loopback only;
# every run is bounded by DURATION_SECS. Writes Markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-3}
BIN="${CARGO_TARGET_DIR:-target}/release/secret-manager"
export BIN
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench.$$"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101}

orig_uri=${MONGO_URI:-}
cargo build --release --quiet --bin secret-manager
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT

run() { # target mode concurrency -> JSON line
  local target=$1 mode=$2 c=$3
  if [ "$target" = ceiling ]; then
    # MONGO_URI (it may hold a password) reaches bench-db through the environment.
    "$BIN" bench-db --mongo-db "bench_ceiling_$$" --mode "$mode" \
      --concurrency "$c" --duration "$DURATION" --json
  else
    # The token goes through the environment of this one command, never on a
    # command line (any user can read those with `ps`).
    VAULT_TOKEN="$TOKEN_bench" "$BIN" bench --url "$target" --service bench --mode "$mode" \
      --concurrency "$c" --duration "$DURATION" --json
  fi
}

median_table() { # label url -> rows of the alternating comparison
  local label=$1 url=$2 mode
  for mode in fetch create; do
    local out="$CLUSTER_DIR/$label-$mode.jsonl"
    : >"$out"
    for _ in $(seq 1 "$ROUNDS"); do
      run ceiling "$mode" 64 | sed 's/^/ceiling /' >>"$out"
      run "$url" "$mode" 64 | sed 's/^/service /' >>"$out"
    done
    python3 - "$label" "$mode" "$out" <<'PY'
import json, statistics, sys
label, mode, path = sys.argv[1:4]
runs = {"ceiling": [], "service": []}
for line in open(path):
    who, js = line.split(" ", 1)
    runs[who].append(json.loads(js))
def med(who, f): return statistics.median(f(r) for r in runs[who])
rps_c, rps_s = med("ceiling", lambda r: r["requests_per_sec"]), med("service", lambda r: r["requests_per_sec"])
p99_c, p99_s = med("ceiling", lambda r: r["latency_ms"]["p99"]), med("service", lambda r: r["latency_ms"]["p99"])
errs = sum(sum(r["errors"].values()) + r["mismatches"] for r in runs["service"])
print(f"| {label} | {mode} | {rps_c:.0f} | {rps_s:.0f} | {rps_s/rps_c:.2f} | {p99_c:.1f} | {p99_s:.1f} | {p99_s/p99_c:.2f} | {errs} |")
PY
  done
}

peak_rss() {
  local f
  for f in "$CLUSTER_DIR"/replica-*.pid; do
    awk '/VmHWM/ {printf "%.1f MB ", $2/1024}' "/proc/$(cat "$f")/status"
  done
}

echo "| setup | op | ceiling req/s | service req/s | ratio | ceiling p99 ms | service p99 ms | p99 ratio | service errors |"
echo "|---|---|---|---|---|---|---|---|---|"
scripts/cluster.sh up 1 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a
median_table "1 replica" "http://127.0.0.1:$BASE_PORT"
rss1=$(peak_rss)
echo
echo "| c | op | ceiling req/s | 1 replica req/s | ceiling p99 ms | 1 replica p99 ms |"
echo "|---|---|---|---|---|---|"
for c in 1 16 64 256; do
  for mode in fetch create; do
    ceil=$(run ceiling "$mode" "$c"); svc=$(run "http://127.0.0.1:$BASE_PORT" "$mode" "$c")
    python3 - "$ceil" "$svc" "$c" "$mode" <<'PY'
import json, sys
c, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cr, sr = c["requests_per_sec"], s["requests_per_sec"]
cp, sp = c["latency_ms"]["p99"], s["latency_ms"]["p99"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {cr:.0f} | {sr:.0f} | {cp:.1f} | {sp:.1f} |")
PY
  done
done
rss1=$(peak_rss)
scripts/cluster.sh down >/dev/null 2>&1
echo
echo "| setup | op | ceiling req/s | service req/s | ratio | ceiling p99 ms | service p99 ms | p99 ratio | service errors |"
echo "|---|---|---|---|---|---|---|---|---|"
unset MONGO_URI MASTER_KEY_FILE TOKEN_bench ALLOW_bench ALLOWED_SERVICES
[ -n "$orig_uri" ] && export MONGO_URI="$orig_uri"
scripts/cluster.sh up 3 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a
median_table "3 replicas + HAProxy" "http://127.0.0.1:$LB_PORT"
echo
echo "Peak RSS (VmHWM), 1 replica after all its runs: $rss1"
echo "Peak RSS (VmHWM), 3 replicas: $(peak_rss)"
scripts/cluster.sh down >/dev/null 2>&1
unset MONGO_URI MASTER_KEY_FILE TOKEN_bench ALLOW_bench ALLOWED_SERVICES
[ -n "$orig_uri" ] && export MONGO_URI="$orig_uri"
echo
echo "One replica against the naive ceiling at 64 and 1 connections (scripts/bench_ceiling.sh $DURATION $ROUNDS):"
echo
scripts/bench_ceiling.sh "$DURATION" "$ROUNDS" "64 1"
echo
echo "Beside OpenBao (scripts/bench_openbao.sh $DURATION $ROUNDS 64):"
echo
scripts/bench_openbao.sh "$DURATION" "$ROUNDS" 64
echo
echo "Named reads and writes as one project grows (scripts/bench_scale.sh $DURATION 64):"
echo
scripts/bench_scale.sh "$DURATION" 64
