#!/usr/bin/env bash
# Runs every test against a real database: starts one (scripts/db.sh) unless
# MONGO_URI is set, runs the whole suite, stops what it started, and exits
# non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the suite starts for itself: HAProxy (cluster tests), nats-server (NATS
# tests), Prometheus (dashboard queries), headless Chromium (Swagger UI and
# console tests); protoc builds the gRPC stubs (build.rs), python3 with grpcio
# runs the independent gRPC client.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Prometheus runs the Grafana dashboard's queries (tests/api/metrics.rs).
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# Node and npm compile and run the generated TypeScript client (tests/api/schema.rs).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import grpc, grpc_tools, grpc_health, grpc_reflection' >/dev/null 2>&1; then
  py_grpc=(grpcio grpcio-tools grpcio-health-checking grpcio-reflection)
  echo "test.sh: installing ${py_grpc[*]}" >&2
  python3 -m pip install -q "${py_grpc[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${py_grpc[@]}"
fi

# The generated clients' type checkers (tests/api/schema.rs): mypy from PyPI,
# TypeScript and Node's type definitions from npm into .tools/node (git-ignored).
if ! python3 -m mypy --version >/dev/null 2>&1; then
  echo "test.sh: installing mypy" >&2
  python3 -m pip install -q mypy 2>/dev/null \
    || python3 -m pip install -q --break-system-packages mypy
fi
if [ ! -x .tools/node/node_modules/.bin/tsc ] || [ ! -d .tools/node/node_modules/@types/node ]; then
  echo "test.sh: installing typescript and @types/node into .tools/node" >&2
  npm install --prefix .tools/node --no-audit --no-fund --silent typescript@5 @types/node@20 >/dev/null
fi

# The console's end-to-end test drives the Debian chromium above with Playwright
# (Python); it downloads no browser of its own.
if ! python3 -c 'import playwright.sync_api' >/dev/null 2>&1; then
  echo "test.sh: installing playwright (driver only)" >&2
  python3 -m pip install -q playwright 2>/dev/null \
    || python3 -m pip install -q --break-system-packages playwright
fi

# tests/api/metrics.rs parses /metrics with the Prometheus project's own parser.
if ! python3 -c 'import prometheus_client.openmetrics.parser' >/dev/null 2>&1; then
  echo "test.sh: installing prometheus-client (Python)" >&2
  python3 -m pip install -q prometheus-client 2>/dev/null \
    || python3 -m pip install -q --break-system-packages prometheus-client
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/secret-manager-test.XXXXXX")
cleanup() {
  # Quietly: the test runner's summary stays the last thing printed.
  scripts/db.sh stop "$state/db" 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

MONGO_URI=$(scripts/db.sh start "$state/db")
export MONGO_URI


if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
