#!/usr/bin/env bash
# Two builds of the service side by side: which one is faster, in one run.
#
#   scripts/bench_ab.sh BIN_A BIN_B [DURATION_SECS] [ROUNDS] [CONCURRENCIES] [MODES]
#                                        (defaults 5, 5, "64 1", "create fetch")
#
# One fresh local database (scripts/cluster.sh); replica 1 runs BIN_A,
# replica 2 BIN_B, with the same settings. For each concurrency and mode the
# harness (`bench`, from BIN_A) alternates between them ROUNDS times. Prints
# medians of the rate, p50 and p99, the ratio B/A, and each replica's own CPU
# time per request and the database's over its runs (from /proc: less
# sensitive to other load than the rate). Loopback only; every run is bounded
# by DURATION_SECS. Writes Markdown to stdout. TRANSPORT (default http, the
# seed API) picks the harness's `--transport`: `update` needs `http-named`.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BIN_A=$(realpath "$1") BIN_B=$(realpath "$2")
DURATION=${3:-5}
ROUNDS=${4:-5}
CONCURRENCIES=${5:-64 1}
MODES=${6:-create fetch}
TRANSPORT=${TRANSPORT:-http}
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench-ab.$$"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101}

trap 'scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
unset MONGO_URI
BIN=$BIN_A scripts/cluster.sh up 1 >/dev/null 2>&1
BIN=$BIN_B scripts/cluster.sh start 2 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a
pid_a=$(cat "$CLUSTER_DIR/replica-1.pid")
pid_b=$(cat "$CLUSTER_DIR/replica-2.pid")
db_pid=$(cat "$CLUSTER_DIR/db/pid")
hz=$(getconf CLK_TCK)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # port pid mode concurrency -> "svc-ticks db-ticks JSON"
  local s0 d0 line
  s0=$(ticks "$2"); d0=$(ticks "$db_pid")
  line=$(VAULT_TOKEN="$TOKEN_bench" "$BIN_A" bench --url "http://127.0.0.1:$1" --service bench \
    --transport "$TRANSPORT" --mode "$3" --concurrency "$4" --duration "$DURATION" --json)
  echo "$(($(ticks "$2") - s0)) $(($(ticks "$db_pid") - d0)) $line"
}

echo "A = $BIN_A"
echo "B = $BIN_B"
echo
echo "| c | op | A req/s | B req/s | B/A | A p50 / p99 ms | B p50 / p99 ms | B/A p99 | A / B replica CPU µs/req | A / B DB CPU µs/req | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for c in $CONCURRENCIES; do
  for mode in $MODES; do
    out="$CLUSTER_DIR/$c-$mode.jsonl"
    : >"$out"
    for _ in $(seq 1 "$ROUNDS"); do
      run "$BASE_PORT" "$pid_a" "$mode" "$c" | sed 's/^/A /' >>"$out"
      run "$((BASE_PORT + 1))" "$pid_b" "$mode" "$c" | sed 's/^/B /' >>"$out"
    done
    python3 - "$c" "$mode" "$out" "$hz" <<'PY'
import json, statistics, sys
c, mode, path, hz = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = {"A": [], "B": []}
for line in open(path):
    who, svc, db, js = line.split(" ", 3)
    r = json.loads(js)
    n = max(r["requests"], 1)
    r["svc_us"], r["db_us"] = int(svc) * 1e6 / hz / n, int(db) * 1e6 / hz / n
    runs[who].append(r)
def med(who, f): return statistics.median(f(r) for r in runs[who])
ra, rb = med("A", lambda r: r["requests_per_sec"]), med("B", lambda r: r["requests_per_sec"])
lat = lambda who, q: med(who, lambda r: r["latency_ms"][q])
errs = sum(sum(r["errors"].values()) + r["mismatches"] for w in runs for r in runs[w])
print(f"| {c} | {mode} | {ra:.0f} | {rb:.0f} | {rb/ra:.2f} | {lat('A','p50'):.2f} / {lat('A','p99'):.2f} "
      f"| {lat('B','p50'):.2f} / {lat('B','p99'):.2f} | {lat('B','p99')/lat('A','p99'):.2f} "
      f"| {med('A', lambda r: r['svc_us']):.0f} / {med('B', lambda r: r['svc_us']):.0f} "
      f"| {med('A', lambda r: r['db_us']):.0f} / {med('B', lambda r: r['db_us']):.0f} | {errs} |")
PY
  done
done
