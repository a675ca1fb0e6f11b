#!/usr/bin/env bash
# Stores a secret and prints its id.
#
# usage: create_secret.sh VALUE        the value as an argument (visible in shell history)
#        create_secret.sh -f FILE      the value from a file (binary is fine)
#        create_secret.sh -            the value from standard input
#
# VAULT_URL (default http://localhost:8000); VAULT_SERVICE and VAULT_TOKEN are
# sent as X-Service / X-Token when set. Needs curl and base64; the value is sent
# on curl's standard input, never on its command line.
# Exit codes: 0 stored, 1 the server said no (its message on stderr), 2 usage.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 1 ] || usage
case "$1" in
  -h|--help) usage ;;
  -f) [ $# -eq 2 ] || usage; [ -r "$2" ] || { echo "create_secret.sh: cannot read $2" >&2; exit 2; }
      encoded=$(base64 -w0 <"$2") ;;
  -)  [ $# -eq 1 ] || usage; encoded=$(base64 -w0) ;;
  *)  [ $# -eq 1 ] || usage; encoded=$(printf '%s' "$1" | base64 -w0) ;;
esac

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

response=$(printf '{"secret":"%s"}' "$encoded" | vault_post /vault/secret/create)
secret_id=$(json_field secret_id <<<"$response")
[ -n "$secret_id" ] || { echo "create_secret.sh: unexpected response from the server" >&2; exit 1; }
echo "$secret_id"
