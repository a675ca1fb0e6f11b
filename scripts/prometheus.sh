#!/usr/bin/env bash
# A throwaway Prometheus (Debian's `prometheus` package: the real PromQL engine)
# scraping the given replicas, for the dashboard snapshot and its test.
#
#   scripts/prometheus.sh start STATE_DIR INTERVAL HOST:PORT...   start one (prints its URL)
#   scripts/prometheus.sh stop STATE_DIR                          stop the one started in STATE_DIR
#
# The scrape job is named `secret-manager` with `metrics_path: /metrics`, as in
# deploy/prometheus.yml; INTERVAL is a Prometheus duration (`1s`, `2s`, ...).
# It listens on a free loopback port; its data and log stay under STATE_DIR.
# Installs the package with apt when `prometheus` is missing.
set -euo pipefail

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

log() { echo "prometheus.sh: $*" >&2; }

install() {
  command -v prometheus >/dev/null 2>&1 && return 0
  log "installing prometheus (apt)"
  local sudo_=""
  [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq prometheus >/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 interval=$2
  shift 2
  [ $# -ge 1 ] || usage
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  {
    echo "global:"
    echo "  scrape_interval: $interval"
    echo "  scrape_timeout: $interval"
    echo "  evaluation_interval: $interval"
    echo "scrape_configs:"
    echo "  - job_name: secret-manager"
    echo "    metrics_path: /metrics"
    echo "    static_configs:"
    echo "      - targets:"
    for t in "$@"; do echo "          - \"$t\""; done
  } >"$dir/prometheus.yml"
  local port
  port=$(free_port)
  prometheus --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" \
    >>"$dir/prometheus.log" 2>&1 &
  echo $! >"$dir/prometheus.pid"
  echo "$port" >"$dir/prometheus.port"
  local pid
  pid=$(cat "$dir/prometheus.pid")
  for _ in $(seq 1 150); do
    if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready"; then
      echo "http://127.0.0.1:$port"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "prometheus did not become ready; see $dir/prometheus.log"
  tail -n 5 "$dir/prometheus.log" >&2 || true
  stop "$dir"
  return 1
}

stop() {
  local dir=$1 pid
  [ -f "$dir/prometheus.pid" ] || return 0
  pid=$(cat "$dir/prometheus.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/prometheus.pid"
}

case "${1:-}" in
  start) [ $# -ge 4 ] || usage; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
