#!/usr/bin/env bash
# Fetches a secret by id and writes its value to standard output.
#
# usage: fetch_secret.sh [--base64] SECRET_ID
#
# --base64 prints the value as the server sends it (base64) instead of decoding it.
# VAULT_URL (default http://localhost:8000); VAULT_SERVICE and VAULT_TOKEN are
# sent as X-Service / X-Token when set. Needs curl and base64.
# Exit codes: 0 fetched, 1 the server said no (its message on stderr), 2 usage.
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

raw=""
case "${1:-}" in
  -h|--help|"") usage ;;
  --base64) raw=1; shift ;;
esac
[ $# -eq 1 ] || usage
case "$1" in
  *[!0-9a-fA-F-]*) echo "fetch_secret.sh: '$1' is not a secret id (a UUID)" >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

response=$(printf '{"secret_id":"%s"}' "$1" | vault_post /vault/secret/fetch)
value=$(json_field secret <<<"$response")
if [ -n "$raw" ]; then
  echo "$value"
else
  printf '%s' "$value" | base64 -d
fi
