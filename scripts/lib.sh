# Shared by the scripts; sourced, not run.
#
# VAULT_URL: http://... or https://... (default http://localhost:8000).
# VAULT_CACERT: a CA certificate (PEM) to trust for an https:// VAULT_URL
# (curl --cacert); without it curl trusts the system's certificate store.

VAULT_URL="${VAULT_URL:-http://localhost:8000}"

# The file holding the X-Token header while a request runs. Removed on every
# way out (normal exit, error, Ctrl-C, kill), so no token is left in $TMPDIR.
vault_header_file=""
vault_cleanup() {
  if [ -n "$vault_header_file" ]; then rm -f "$vault_header_file"; fi
  vault_header_file=""
}

# POSTs standard input as JSON to VAULT_URL/$1. Prints the body on success;
# on an error prints the server's message to stderr and exits 1.
vault_post() {
  local out status body
  local -a headers=(-H "Content-Type: application/json")
  local -a tls=()
  case "$VAULT_URL" in
    http://*|https://*) ;;
    *) echo "$(basename "$0"): VAULT_URL must start with http:// or https://" >&2; exit 2 ;;
  esac
  if [ -n "${VAULT_CACERT:-}" ]; then
    [ -r "$VAULT_CACERT" ] || { echo "$(basename "$0"): cannot read VAULT_CACERT $VAULT_CACERT" >&2; exit 2; }
    tls=(--cacert "$VAULT_CACERT")
  fi
  [ -n "${VAULT_SERVICE:-}" ] && headers+=(-H "X-Service: $VAULT_SERVICE")
  # Set here, not at the top: callers run this in a subshell ($(...)), which
  # does not inherit traps.
  trap vault_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ -n "${VAULT_TOKEN:-}" ]; then
    # Keep the token off curl's command line: pass headers through a file.
    vault_header_file=$(umask 077 && mktemp)
    printf 'X-Token: %s\n' "$VAULT_TOKEN" >"$vault_header_file"
    headers+=(-H "@$vault_header_file")
  fi
  out=$(curl -sS --max-time 30 "${tls[@]}" -X POST "${headers[@]}" --data-binary @- \
        -w '\n%{http_code}' "$VAULT_URL$1") || {
    vault_cleanup
    echo "$(basename "$0"): cannot reach $VAULT_URL" >&2
    exit 1
  }
  vault_cleanup
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

# Appends standard input to the dotenv file $1, which holds keys and tokens:
# creates it readable by its owner only, and makes an existing one so (0600).
append_private() {
  (umask 077 && touch "$1")
  chmod 600 "$1"
  cat >>"$1"
}
