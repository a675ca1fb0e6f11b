#!/usr/bin/env bash
# Runs every test against a real database: starts one (scripts/db.sh) unless
# MONGO_URI is set, runs the whole suite, stops what it started, and exits
# non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

state=$(mktemp -d "${TMPDIR:-/tmp}/secret-manager-test.XXXXXX")
cleanup() {
  scripts/db.sh stop "$state/db" || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

MONGO_URI=$(scripts/db.sh start "$state/db")
export MONGO_URI

# The suite runs the release-free debug binary for the CLI and start-up tests.
cargo build --bins --quiet

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
