# Shared by the client scripts; sourced, not run.

VAULT_URL="${VAULT_URL:-http://localhost:8000}"

# POSTs standard input as JSON to VAULT_URL/$1. Prints the body on success;
# on an error prints the server's message to stderr and exits 1.
vault_post() {
  local out status body
  local -a headers=(-H "Content-Type: application/json")
  [ -n "${VAULT_SERVICE:-}" ] && headers+=(-H "X-Service: $VAULT_SERVICE")
  if [ -n "${VAULT_TOKEN:-}" ]; then
    # Keep the token off curl's command line: pass headers through a file.
    local hfile
    hfile=$(mktemp)
    chmod 600 "$hfile"
    printf 'X-Token: %s\n' "$VAULT_TOKEN" >"$hfile"
    headers+=(-H "@$hfile")
  fi
  out=$(curl -sS --max-time 30 -X POST "${headers[@]}" --data-binary @- \
        -w '\n%{http_code}' "$VAULT_URL$1") || {
    [ -n "${hfile:-}" ] && rm -f "$hfile"
    echo "$(basename "$0"): cannot reach $VAULT_URL" >&2
    exit 1
  }
  [ -n "${hfile:-}" ] && rm -f "$hfile"
  status=${out##*$'\n'}
  body=${out%$'\n'*}
  if [ "${status:0:1}" != 2 ]; then
    local message
    message=$(json_field message <<<"$body")
    echo "$(basename "$0"): server answered $status: ${message:-$body}" >&2
    exit 1
  fi
  printf '%s' "$body"
}

# Prints the string value of the first field named $1 in the JSON on stdin.
# Enough for this API's flat answers; values never contain escaped quotes.
json_field() {
  sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" | head -n 1
}
