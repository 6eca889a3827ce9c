#!/usr/bin/env bash
# `make observe`: the four services (`briefxai up` on the default ports) and a Prometheus scraping them
# with deploy/prometheus/prometheus.yml and its alert rules. Prints the Prometheus URL; Ctrl-C stops
# both (services first wind down through `briefxai up`, then Prometheus).
#
# Environment: BIN (the virtualenv's bin, default .venv/bin), PROMETHEUS_LISTEN (default
# 127.0.0.1:9090), BRIEFXAI_DATA_DIR (default briefxai-data: the store, the logs, and the Prometheus
# data in prometheus/).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
LISTEN=${PROMETHEUS_LISTEN:-127.0.0.1:9090}
DATA_DIR=${BRIEFXAI_DATA_DIR:-briefxai-data}
CONFIG=deploy/prometheus/prometheus.yml
LOG_DIR=$DATA_DIR/logs

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "observe: prometheus and promtool are needed: apt-get install prometheus (Debian, Ubuntu)" >&2
  exit 1
fi
promtool check config "$CONFIG" >/dev/null  # the rule files too
mkdir -p "$DATA_DIR/prometheus" "$LOG_DIR"

up_pid=""
prometheus_pid=""
stop() {
  trap - INT TERM
  for pid in $up_pid $prometheus_pid; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
  done
  for pid in $up_pid $prometheus_pid; do wait "$pid" 2>/dev/null || true; done
}
trap 'echo; stop; exit 130' INT
trap 'stop; exit 143' TERM

# The scrape config names the default HTTP ports (9091-9094), so the suite runs on the defaults.
env -u BRIEFXAI_BASE_PORT "$BIN/briefxai" up --data-dir "$DATA_DIR" &
up_pid=$!
prometheus \
  --config.file="$CONFIG" \
  --storage.tsdb.path="$DATA_DIR/prometheus" \
  --storage.tsdb.retention.time=7d \
  --web.listen-address="$LISTEN" \
  >"$LOG_DIR/prometheus.log" 2>&1 &
prometheus_pid=$!

# The URL is printed once Prometheus is ready and every service's /health answers 200, i.e. serves
# (a bounded wait; `briefxai up` reports a service that does not start).
url="http://$LISTEN"
answers() {
  "$BIN/python" -c "import sys, urllib.request
for url in sys.argv[1:]: urllib.request.urlopen(url, timeout=1)" "$@" 2>/dev/null
}
ready=""
for _ in $(seq 660); do
  if ! kill -0 "$prometheus_pid" 2>/dev/null || ! kill -0 "$up_pid" 2>/dev/null; then break; fi
  if answers "$url/-/ready" http://127.0.0.1:909{1..4}/health; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ -z "$ready" ] && ! kill -0 "$prometheus_pid" 2>/dev/null; then
  echo "observe: Prometheus did not start on $url; last lines of $LOG_DIR/prometheus.log:" >&2
  tail -n 20 "$LOG_DIR/prometheus.log" >&2
  stop
  exit 1
fi
if [ -z "$ready" ]; then
  echo "observe: Prometheus or a service is not ready yet" >&2
fi
echo "Prometheus: $url  (targets: $url/targets, alerts: $url/alerts; log: $LOG_DIR/prometheus.log)"
echo "Grafana: import deploy/grafana/briefxai-dashboard.json with a Prometheus data source at $url"

# Until Ctrl-C, or until either exits on its own (then the other is stopped too).
while kill -0 "$up_pid" 2>/dev/null && kill -0 "$prometheus_pid" 2>/dev/null; do sleep 1; done
if ! kill -0 "$prometheus_pid" 2>/dev/null; then
  echo "observe: Prometheus exited; last lines of $LOG_DIR/prometheus.log:" >&2
  tail -n 20 "$LOG_DIR/prometheus.log" >&2
else
  echo "observe: briefxai up exited; stopping Prometheus" >&2
fi
stop
exit 1
