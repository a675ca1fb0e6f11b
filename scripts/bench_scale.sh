#!/usr/bin/env bash
# Named reads and writes as one project grows: 1,000, 10,000 and 100,000 secrets.
#
#   scripts/bench_scale.sh [DURATION_SECS] [CONCURRENCY] [SIZES...]   (defaults 5, 64, 1000 10000 100000)
#
# One release replica on a fresh local database (scripts/cluster.sh up 1). For
# each size the project `bench` is filled up to it (by the harness's concurrent
# seeding, through the API), then, in this order: `bench --transport
# http-named --mode fetch` (reads among the secrets just seeded), `--mode
# update` (a new version of one of 1,000 seeded names) and `--mode create` (new
# names, at most 2,000 so the size stays put). Flat means the rate at 100,000
# is close to the rate at 1,000 (the last line gives the ratios). Beside the
# creates, the naive ceiling (`bench-db --mode create`: the same insert and
# audit record, no service) runs on its own collection filled to the same size,
# to tell the database's own growth from the service's. Loopback only; every
# run is bounded by DURATION_SECS. Writes Markdown to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
CONCURRENCY=${2:-64}
shift 2 2>/dev/null || shift $#
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000 100000)
BIN="${CARGO_TARGET_DIR:-target}/release/secret-manager"
export BIN
export CLUSTER_DIR="${TMPDIR:-/tmp}/secret-manager-bench-scale.$$"
export LB_PORT=${LB_PORT:-18000} BASE_PORT=${BASE_PORT:-18101}

cargo build --release --quiet --bin secret-manager
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
scripts/cluster.sh up 1 >/dev/null 2>&1
set -a; . "$CLUSTER_DIR/env"; set +a

run() { # mode seed max-requests -> JSON line
  VAULT_TOKEN="$TOKEN_bench" "$BIN" bench --transport http-named --url "http://127.0.0.1:$BASE_PORT" \
    --service bench --mode "$1" --seed "$2" --max-requests "$3" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --json
}

ceiling() { # mode seed max-requests -> JSON line
  "$BIN" bench-db --mongo-db bench_scale_ceiling --keep --mode "$1" --seed "$2" \
    --max-requests "$3" --concurrency "$CONCURRENCY" --duration "$DURATION" --json
}

out="$CLUSTER_DIR/scale.jsonl"
: >"$out"
size=0
ceiling_size=0
for target in "${SIZES[@]}"; do
  fill=$((target > ceiling_size ? target - ceiling_size : 1))
  ceiling fetch "$fill" 1 >/dev/null  # fills the ceiling's collection
  ceiling_size=$((ceiling_size + fill))
  line=$(ceiling create 1 2000)
  echo "$target ceiling-create $ceiling_size $line" >>"$out"
  ceiling_size=$((ceiling_size + $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$line")))

  fill=$((target > size ? target - size : 1))
  line=$(run fetch "$fill" 10000000)
  size=$((size + fill))
  echo "$target fetch $size $line" >>"$out"
  line=$(run update 1000 10000000)
  size=$((size + 1000))
  echo "$target update $size $line" >>"$out"
  line=$(run create 1 2000)
  echo "$target create $size $line" >>"$out"  # the size when the creates began
  size=$((size + $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$line")))
done
python3 - "$out" <<'PY'
import json, sys
rows = [l.split(" ", 3) for l in open(sys.argv[1])]
print("| size | op | secrets in project | req/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|---|")
by = {}
for size, mode, n, js in rows:
    r = json.loads(js)
    errs = sum(r["errors"].values()) + r["mismatches"]
    by.setdefault(mode, []).append(r["requests_per_sec"])
    print(f"| {int(size):,} | {mode} | {int(n):,} | {r['requests_per_sec']:.0f} | {r['latency_ms']['p50']:.1f} | {r['latency_ms']['p99']:.1f} | {errs} |")
print()
print("Largest / smallest size, req/s: " + ", ".join(f"{m} {v[-1]/v[0]:.2f}" for m, v in by.items()) + ".")
if by.get("create") and by.get("ceiling-create"):
    print()
    print("Service create / ceiling create at each size: " + ", ".join(
        f"{s / c:.2f}" for s, c in zip(by["create"], by["ceiling-create"])) + ".")
PY
