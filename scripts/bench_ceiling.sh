#!/usr/bin/env bash
# One replica against the naive ceiling (issue 16's targets), side by side.
#
#   scripts/bench_ceiling.sh [DURATION_SECS] [ROUNDS] [CONCURRENCIES]   (defaults 5, 3, "64 1")
#
# Starts a fresh local database and one release replica (scripts/cluster.sh),
# then for each concurrency and for fetch and create alternates ROUNDS times
# between `bench-db` (the ceiling: exactly one request's database work, no
# HTTP, no crypto) and `bench` against the replica. Medians of the rate and
# of p50/p99, and the CPU time per request of the database and of the replica
# (from /proc, over the service's runs). Loopback only; every run is bounded
# by DURATION_SECS. Writes Markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-3}
CONCURRENCIES=${3:-64 1}
BIN="${CARGO_TARGET_DIR:-target}/release/secret-manager"
export BIN
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench-ceiling.$$"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101}

cargo build --release --quiet --bin secret-manager
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
unset MONGO_URI
scripts/cluster.sh up 1 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a
svc_pid=$(cat "$CLUSTER_DIR/replica-1.pid")
db_pid=$(cat "$CLUSTER_DIR/db/pid")
hz=$(getconf CLK_TCK)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # target mode concurrency -> "db-ticks svc-ticks JSON"
  local target=$1 mode=$2 c=$3 db0 svc0 line
  db0=$(ticks "$db_pid"); svc0=$(ticks "$svc_pid")
  if [ "$target" = ceiling ]; then
    line=$("$BIN" bench-db --mongo-db "bench_ceiling_$$" --mode "$mode" \
      --concurrency "$c" --duration "$DURATION" --json)
  else
    line=$(VAULT_TOKEN="$TOKEN_bench" "$BIN" bench --url "http://127.0.0.1:$BASE_PORT" \
      --service bench --mode "$mode" --concurrency "$c" --duration "$DURATION" --json)
  fi
  echo "$(($(ticks "$db_pid") - db0)) $(($(ticks "$svc_pid") - svc0)) $line"
}

echo "| c | op | ceiling req/s | service req/s | ratio | ceiling p50 / p99 ms | service p50 / p99 ms | p99 ratio | DB CPU µs/req ceiling / service | replica CPU µs/req | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for c in $CONCURRENCIES; do
  for mode in fetch create; do
    out="$CLUSTER_DIR/$c-$mode.jsonl"
    : >"$out"
    for _ in $(seq 1 "$ROUNDS"); do
      run ceiling "$mode" "$c" | sed 's/^/ceiling /' >>"$out"
      run service "$mode" "$c" | sed 's/^/service /' >>"$out"
    done
    python3 - "$c" "$mode" "$out" "$hz" <<'PY'
import json, statistics, sys
c, mode, path, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = {"ceiling": [], "service": []}
for line in open(path):
    who, db, svc, js = line.split(" ", 3)
    r = json.loads(js)
    n = max(r["requests"], 1)
    r["db_us"] = int(db) / hz * 1e6 / n
    r["svc_us"] = int(svc) / hz * 1e6 / n
    runs[who].append(r)
def med(who, f): return statistics.median(f(r) for r in runs[who])
rc, rs = med("ceiling", lambda r: r["requests_per_sec"]), med("service", lambda r: r["requests_per_sec"])
lat = lambda who, q: med(who, lambda r: r["latency_ms"][q])
errs = sum(sum(r["errors"].values()) + r["mismatches"] for r in runs["service"])
print(f"| {c} | {mode} | {rc:.0f} | {rs:.0f} | {rs/rc:.2f} | {lat('ceiling','p50'):.2f} / {lat('ceiling','p99'):.2f} "
      f"| {lat('service','p50'):.2f} / {lat('service','p99'):.2f} | {lat('service','p99')/lat('ceiling','p99'):.2f} "
      f"| {med('ceiling', lambda r: r['db_us']):.0f} / {med('service', lambda r: r['db_us']):.0f} "
      f"| {med('service', lambda r: r['svc_us']):.0f} | {errs} |")
PY
  done
done
echo
awk '/VmHWM/ {printf "Peak RSS (VmHWM) of the replica: %.1f MB\n", $2/1024}' "/proc/$svc_pid/status"
