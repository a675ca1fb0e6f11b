#!/usr/bin/env bash
# Precision, recall and files/s of `secret-manager scan` and detect-secrets
# 1.5.0 on the labelled corpus, in one run (see docs/BENCHMARKS.md).
# Usage: scripts/scan_bench.sh [--copies N]
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${XDG_CACHE_HOME:-$HOME/.cache}/secret-manager/detect-secrets-1.5.0"
if [ ! -x "$venv/bin/detect-secrets" ]; then
  echo "scan_bench: installing detect-secrets 1.5.0 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q detect-secrets==1.5.0
fi

cargo build --release --quiet --bin secret-manager
# A copy, so a later build into a shared target directory cannot swap it.
work=$(mktemp -d "${TMPDIR:-/tmp}/scan-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "${CARGO_TARGET_DIR:-target}/release/secret-manager" "$work/secret-manager"
"$work/secret-manager" scan --help >/dev/null
python3 scripts/scan_bench.py --bin "$work/secret-manager" --detect-secrets "$venv/bin/detect-secrets" "$@"
