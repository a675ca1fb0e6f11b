#!/usr/bin/env bash
# What recording metrics costs: the same replica with and without, side by side.
#
#   scripts/bench_metrics.sh [DURATION_SECS] [ROUNDS] [CONCURRENCY]   (defaults 5, 3, 64)
#
# Two release replicas on one local database (scripts/cluster.sh): replica 1
# as deployed (metrics on), replica 2 with METRICS_ENABLED=false. For fetch
# and create the harness (`bench --transport http`) alternates between them
# ROUNDS times; medians, the cost as 1 - on/off of the rate, and the
# replica's own CPU time per request (from /proc: less sensitive than the rate
# to whatever else runs on the machine). Loopback only; every run is bounded
# by DURATION_SECS. Writes Markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
ROUNDS=${2:-3}
CONCURRENCY=${3:-64}
BIN="${CARGO_TARGET_DIR:-target}/release/secret-manager"
export BIN
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench-metrics.$$"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101}

cargo build --release --quiet --bin secret-manager
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
scripts/cluster.sh up 1 >/dev/null 2>&1
METRICS_ENABLED=false scripts/cluster.sh start 2 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a
curl -fs -o /dev/null "http://127.0.0.1:$BASE_PORT/metrics"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE_PORT + 1))/metrics")" = 404 ]

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # port pid mode -> "CPU-ticks JSON" (the token reaches the harness through its environment)
  local before after line
  before=$(ticks "$2")
  line=$(VAULT_TOKEN="$TOKEN_bench" "$BIN" bench --url "http://127.0.0.1:$1" --service bench \
    --mode "$3" --concurrency "$CONCURRENCY" --duration "$DURATION" --json)
  after=$(ticks "$2")
  echo "$((after - before)) $line"
}
on_pid=$(cat "$CLUSTER_DIR/replica-1.pid")
off_pid=$(cat "$CLUSTER_DIR/replica-2.pid")
hz=$(getconf CLK_TCK)

echo "| op | metrics off req/s | metrics on req/s | on/off | cost | off CPU µs/req | on CPU µs/req | CPU cost | off p99 ms | on p99 ms | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for mode in fetch create; do
  out="$CLUSTER_DIR/$mode.jsonl"
  : >"$out"
  for _ in $(seq 1 "$ROUNDS"); do
    run "$((BASE_PORT + 1))" "$off_pid" "$mode" | sed 's/^/off /' >>"$out"
    run "$BASE_PORT" "$on_pid" "$mode" | sed 's/^/on /' >>"$out"
  done
  python3 - "$mode" "$out" "$hz" <<'PY'
import json, statistics, sys
mode, path, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = {"off": [], "on": []}
for line in open(path):
    who, ticks, js = line.split(" ", 2)
    r = json.loads(js)
    r["cpu_us"] = int(ticks) * 1e6 / hz / max(r["requests"], 1)
    runs[who].append(r)
def med(who, f): return statistics.median(f(r) for r in runs[who])
r0, r1 = med("off", lambda r: r["requests_per_sec"]), med("on", lambda r: r["requests_per_sec"])
p0, p1 = med("off", lambda r: r["latency_ms"]["p99"]), med("on", lambda r: r["latency_ms"]["p99"])
errs = sum(sum(r["errors"].values()) + r["mismatches"] for w in runs for r in runs[w])
c0, c1 = med("off", lambda r: r["cpu_us"]), med("on", lambda r: r["cpu_us"])
print(f"| {mode} | {r0:.0f} | {r1:.0f} | {r1/r0:.3f} | {100*(1-r1/r0):.1f}% | {c0:.0f} | {c1:.0f} | {100*(c1/c0-1):.1f}% | {p0:.1f} | {p1:.1f} | {errs} |")
PY
done
