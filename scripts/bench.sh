#!/usr/bin/env bash
# Benchmarks of deploy-agent on this machine (release build), printed as a table:
#   - the agent's resident memory (RSS) when idle, with 0 and with 20 deployments
#   - requests per second of GET /healthz and GET /deployments/NAME/health (wrk, loopback,
#     a few seconds each; both answer from the agent's cached state)
#
# Installs Debian's wrk with apt-get when it is missing. Everything runs on its own loopback
# address and a temporary data directory, and is stopped at the end.
# Environment:
#   BENCH_IP=127.0.0.200   the loopback address of the agent and its apps
#   BENCH_SECONDS=5        how long each wrk run lasts
#   BENCH_SKIP_BUILD=1     use target/release as it is
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IP="${BENCH_IP:-127.0.0.200}"
SECONDS_EACH="${BENCH_SECONDS:-5}"
N=20

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found: installing it with apt-get" >&2
  sudo=""; [[ "$(id -u)" != 0 ]] && sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q wrk >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q wrk >/dev/null; }
fi
if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release --bin deploy-agent --bin deployctl >&2
fi
BIN="$ROOT/target/release"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/deployctl-bench.XXXXXX")"
AGENT_PID=""
cleanup() {
  set +e
  # Every app's process group (named in the records), then the agent.
  for rec in "$WORK"/data/deployments/*/deployment.json; do
    [[ -f "$rec" ]] || continue
    pid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid") or "")' "$rec")"
    [[ -n "$pid" && "$pid" -gt 1 ]] && kill -KILL -- "-$pid" 2>/dev/null
  done
  [[ -n "$AGENT_PID" ]] && kill -KILL "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# The agent, on its own address; its ready line names its ports.
mkfifo "$WORK/ready"
"$BIN/deploy-agent" --listen "$IP:0" --http-listen "$IP:0" --app-host "$IP" \
  --data-dir "$WORK/data" >"$WORK/ready" 2>"$WORK/agent.log" &
AGENT_PID=$!
read -r -t 20 line <"$WORK/ready" || { echo "the agent did not start:" >&2; cat "$WORK/agent.log" >&2; exit 1; }
GRPC="$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' <<<"$line")"
HTTP="$(sed -n 's/.*http=\([^ ]*\).*/\1/p' <<<"$line")"
sleep 3
RSS0="$(rss_kib "$AGENT_PID")"

# 20 deployments of a small stdlib-Python app from a local git repository.
REPO="$WORK/repo"; PROJECT="$WORK/project"
mkdir -p "$REPO" "$PROJECT"
cat >"$REPO/app.py" <<'PY'
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
PY
(
  cd "$REPO"
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid
  export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
  git init -q -b main && git add -A && git commit -q -m app
)
DCTL=("$BIN/deployctl" --project "$PROJECT")
"${DCTL[@]}" declare env agent bench --address "http://$GRPC" >/dev/null
start=$(date +%s.%N)
for i in $(seq 1 $N); do
  "${DCTL[@]}" run "bench-$i" --env bench --repo "$REPO" --command "python3 app.py" \
    --port $((8100 + i)) --health-path / >/dev/null
done
DEPLOY_S="$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")"
sleep 5
RSS20="$(rss_kib "$AGENT_PID")"

rps() {
  wrk -t2 -c32 -d"${SECONDS_EACH}s" --latency "$1" 2>&1 | tee -a "$WORK/wrk.log" \
    | awk '/^Requests\/sec:/ {printf "%.0f", $2}'
}
p99() { awk '/^ *99%/ {v=$2} END {print v}' "$WORK/wrk.log"; }
: >"$WORK/wrk.log"
RPS_HEALTHZ="$(rps "http://$HTTP/healthz")"; P99_HEALTHZ="$(p99)"
: >"$WORK/wrk.log"
RPS_DEP="$(rps "http://$HTTP/deployments/bench-1/health")"; P99_DEP="$(p99)"
RSS_AFTER="$(rss_kib "$AGENT_PID")"

echo
echo "deploy-agent benchmark ($(nproc) cores, release build, loopback, wrk -t2 -c32 -d${SECONDS_EACH}s)"
printf '%-48s %s\n' "measure" "result"
printf '%-48s %s\n' "------------------------------------------------" "--------------------"
printf '%-48s %s\n' "agent RSS, idle, 0 deployments" "$((RSS0 / 1024)) MiB ($RSS0 KiB)"
printf '%-48s %s\n' "agent RSS, idle, $N deployments" "$((RSS20 / 1024)) MiB ($RSS20 KiB)"
printf '%-48s %s\n' "agent RSS after the HTTP load" "$((RSS_AFTER / 1024)) MiB ($RSS_AFTER KiB)"
printf '%-48s %s\n' "$N deploys, one after another (no packages)" "${DEPLOY_S} s"
printf '%-48s %s\n' "GET /healthz" "$RPS_HEALTHZ req/s (p99 $P99_HEALTHZ)"
printf '%-48s %s\n' "GET /deployments/NAME/health ($N deployments)" "$RPS_DEP req/s (p99 $P99_DEP)"
