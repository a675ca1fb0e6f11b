#!/usr/bin/env bash
# The Grafana dashboard (deploy/grafana/secret-manager.json) drawn from real
# data: docs/dashboard.png.
#
#   scripts/dashboard_snapshot.sh [SECONDS]   (default 90, at most 600)
#
# Starts a fresh database and one replica (scripts/cluster.sh, with
# METRICS_DB_COMMANDS=true), a real Prometheus scraping it every 2 s
# (scripts/prometheus.sh), and drives SECONDS of mixed traffic with the
# project's own harness (`secret-manager bench`): named creates and fetches
# over HTTP, the UUID endpoints, gRPC, a bad token (authentication failures)
# and a service asking for a project it has no grant on (denials); every run
# is bounded in time and count. Then scripts/render_dashboard.py evaluates
# each panel's queries over the window through Prometheus' query_range API and
# draws them. Stops everything it started. PROFILE=debug uses the debug build
# (default release); OUT sets the picture's path.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_=${1:-90}
[ "$SECONDS_" -ge 20 ] 2>/dev/null && [ "$SECONDS_" -le 600 ] || { echo "usage: $0 [SECONDS 20-600]" >&2; exit 2; }
PROFILE=${PROFILE:-release}
OUT=${OUT:-docs/dashboard.png}
SCRAPE=2
log() { echo "dashboard_snapshot.sh: $*" >&2; }

if [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin secret-manager
else
  cargo build --quiet --bin secret-manager
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE/secret-manager"
export BIN
if ! python3 -c 'import matplotlib' >/dev/null 2>&1; then
  log "installing matplotlib"
  python3 -m pip install -q matplotlib 2>/dev/null \
    || python3 -m pip install -q --break-system-packages matplotlib
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/secret-manager-dashboard.XXXXXX")
export CLUSTER_DIR="$state/cluster"
cleanup() {
  scripts/prometheus.sh stop "$state/prometheus" 2>/dev/null || true
  scripts/cluster.sh down >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports: the balancer, and a replica's HTTP port with its gRPC
# port 1000 above it.
read -r LB_PORT BASE_PORT < <(python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
ports = []
while len(ports) < 2:
    p = random.randrange(20000, 29000)
    if free(p) and free(p + 1000) and p not in ports:
        ports.append(p)
print(*ports)
PY
)
export LB_PORT BASE_PORT

# Two services: `bench` may do anything, `outsider` only holds a grant on a
# project the load never touches, so its requests are denied. The bad-token
# run claims a third name, `intruder`: the authentication-failure limiter
# (per claimed service and address) throttles it to 429s, not `bench`.
token() { head -c 24 /dev/urandom | base64 | tr '+/' '-_'; }
export ALLOWED_SERVICES=bench,outsider ALLOW_bench='*' ALLOW_outsider='elsewhere:'
TOKEN_bench=$(token) TOKEN_outsider=$(token)
export TOKEN_bench TOKEN_outsider
export METRICS_DB_COMMANDS=true
scripts/cluster.sh up 1 >/dev/null 2>"$state/cluster.log" || { cat "$state/cluster.log" >&2; exit 1; }
replica="127.0.0.1:$BASE_PORT"
prom=$(scripts/prometheus.sh start "$state/prometheus" "${SCRAPE}s" "$replica")
log "replica on $replica (pid $(cat "$CLUSTER_DIR/replica-1.pid")), Prometheus on $prom"

# Wait for the first successful scrape, then keep a short idle lead-in.
for _ in $(seq 1 100); do
  curl -fs "$prom/api/v1/query?query=up" | grep -q '"value":\[[^]]*,"1"\]' && break
  sleep 0.2
done
start=$(date +%s)
sleep $((SCRAPE * 3))

at() { python3 -c "print(max(1, round($SECONDS_ * $1)))"; }
bench() { # name delay duration service token args...
  local name=$1 delay=$2 dur=$3 service=$4 tok=$5
  shift 5
  (
    sleep "$delay"
    VAULT_TOKEN="$tok" "$BIN" bench --url "http://$replica" --service "$service" \
      --duration "$dur" --max-requests 200000 "$@"
  ) >"$state/bench-$name.log" 2>&1 &
  pids+=($!)
}
pids=()
log "driving ${SECONDS_}s of traffic"
bench named 0 "$(at 0.85)" bench "$TOKEN_bench" --transport http-named --mode mix --fetch-ratio 0.8 --concurrency 4 --seed 64
bench uuid "$(at 0.2)" "$(at 0.5)" bench "$TOKEN_bench" --transport http --mode mix --fetch-ratio 0.7 --concurrency 2 --seed 32
bench grpc "$(at 0.35)" "$(at 0.4)" bench "$TOKEN_bench" --transport grpc --grpc-url "http://127.0.0.1:$((BASE_PORT + 1000))" --mode mix --fetch-ratio 0.8 --concurrency 2 --seed 32
bench bad-token "$(at 0.3)" "$(at 0.2)" intruder "not-a-token-$(token)" --transport http-named --mode create --concurrency 1
bench denied "$(at 0.55)" "$(at 0.25)" outsider "$TOKEN_outsider" --transport http-named --mode create --concurrency 1
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
for f in "$state"/bench-*.log; do
  echo "  $(basename "$f" .log): $(tail -n 1 "$f")" >&2
done
[ "$failed" = 0 ] || { log "a bench run failed (logs above)"; exit 1; }
# A short idle tail, so the panels show the load ending.
sleep $((SCRAPE * 4))
end=$(date +%s)

python3 scripts/render_dashboard.py render --prometheus "$prom" --start "$start" --end "$end" \
  --scrape-interval "$SCRAPE" --out "$OUT"
