#!/usr/bin/env bash
# Benchmarks, printed as one table: each row with its baseline measured in the same run and
# the ratio. Bounded in time (a few minutes); cleans up everything it started. Builds the
# release binaries first (BENCH_SKIP_BUILD=1 to use target/release as it is).
#
#   scripts/bench.sh                    # every row
#   BENCH_ONLY=agent scripts/bench.sh   # one group: agent | fanout
#
# Rows:
#   agent    the agent's idle RSS with 0 and with 20 deployments; requests per second of
#            GET /healthz and GET /deployments/NAME/health (wrk, loopback, BENCH_SECONDS each;
#            both answer from the agent's cached state)
#   fanout   deploying a stdlib app to 3 and to N agents vs to 1 (concurrent fan-out), and
#            the machine's own floor: N apps started at once by hand
# Installs Debian's wrk with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FANOUT_N="${FANOUT_N:-10}"
SECONDS_EACH="${BENCH_SECONDS:-5}"
ONLY="${BENCH_ONLY:-}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found: installing it with apt-get" >&2
  sudo=""; [[ "$(id -u)" != 0 ]] && sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q wrk >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q wrk >/dev/null; }
fi
if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release --quiet --bin deploy-agent --bin deployctl
fi
BIN="$PWD/target/release"
WORK="$(mktemp -d /tmp/deployctl-bench-XXXXXX)"
PIDS=()
cleanup() {
  exec 2>/dev/null
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Apps outlive their agents by design: kill every app process group the agents started.
  for rec in "$WORK"/agent-*/data/deployments/*/deployment.json; do
    [[ -f "$rec" ]] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid") or "")' "$rec")
    [[ -n "$pid" ]] && kill -9 -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

ROWS=()
row() { ROWS+=("$(printf '| %-44s | %12s | %12s | %7s |' "$1" "$2" "$3" "$4")"); }
now() { date +%s.%N; }
elapsed_ms() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}x' if b else '-')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Starts an agent on loopback address $1 (its apps bind there too); sets AGENT_GRPC and
# AGENT_HTTP. Not in a subshell, so its pid is recorded for the cleanup.
start_agent() {
  local ip="$1" dir="$WORK/agent-$1"
  mkdir -p "$dir"
  "$BIN/deploy-agent" --listen "$ip:0" --http-listen "$ip:0" --data-dir "$dir/data" \
    --app-host "$ip" > "$dir/out" 2> "$dir/err" &
  PIDS+=($!)
  AGENT_PID=$!
  local deadline=$((SECONDS + 20))
  until grep -q "ready" "$dir/out" 2>/dev/null; do
    (( SECONDS < deadline )) || { echo "agent on $ip did not start" >&2; cat "$dir/err" >&2; exit 1; }
    sleep 0.05
  done
  AGENT_GRPC=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' "$dir/out")
  AGENT_HTTP=$(sed -n 's/.*http=\([^ ]*\).*/\1/p' "$dir/out")
}

# A git repository with a stdlib app; sets REPO (made once).
make_repo() {
  local repo="$WORK/repo"
  REPO="$repo"
  [[ -d "$repo/.git" ]] && return
  mkdir -p "$repo"
  cat > "$repo/app.py" <<'EOF'
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
EOF
  git -C "$repo" init -q -b main
  git -C "$repo" add .
  git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -qm app
}

# Median ms of 3 deploys of a stdlib app to env $1 (removed after each).
deploy_ms() {
  local env="$1" proj="$2" repo="$3" times=()
  for round in 1 2 3; do
    local t0 t1
    t0=$(now)
    "$BIN/deployctl" --project "$proj" run "app-$env" --env "$env" --repo "$repo" \
      --command "python3 app.py" --port $((8100 + round)) --health-path / >/dev/null
    t1=$(now)
    times+=("$(elapsed_ms "$t0" "$t1")")
    "$BIN/deployctl" --project "$proj" remove "app-$env" >/dev/null
  done
  median "${times[@]}"
}

# Median ms to start N copies of the app by hand at once and see each answer: the
# machine's own floor for N concurrent app starts (2 cores: Python start-up is CPU-bound).
by_hand_ms() {
  local n="$1" repo="$2" times=()
  for round in 1 2 3; do
    local t0 t1 pids=()
    t0=$(now)
    for i in $(seq 1 "$n"); do
      (cd "$repo" && HOST="127.0.0.$((230 + i))" PORT=8200 exec python3 app.py) >/dev/null 2>&1 &
      pids+=($!)
    done
    for i in $(seq 1 "$n"); do
      until curl -fs -o /dev/null "http://127.0.0.$((230 + i)):8200/"; do sleep 0.01; done
    done
    t1=$(now)
    kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true
    times+=("$(elapsed_ms "$t0" "$t1")")
  done
  median "${times[@]}"
}

bench_fanout() {
  make_repo
  local repo="$REPO" addrs=()
  for i in $(seq 1 "$FANOUT_N"); do
    start_agent "127.0.0.$((200 + i))"
    addrs+=("$AGENT_GRPC")
  done
  local proj="$WORK/project"; mkdir -p "$proj"
  local args=()
  for a in "${addrs[@]}"; do args+=(--address "http://$a"); done
  "$BIN/deployctl" --project "$proj" declare env agent one --address "http://${addrs[0]}" >/dev/null
  "$BIN/deployctl" --project "$proj" declare env agent three "${args[@]:0:6}" >/dev/null
  "$BIN/deployctl" --project "$proj" declare env agent many "${args[@]}" >/dev/null
  local m1 m3 mn h1 h3 hn
  m1=$(deploy_ms one "$proj" "$repo")
  m3=$(deploy_ms three "$proj" "$repo")
  mn=$(deploy_ms many "$proj" "$repo")
  h1=$(by_hand_ms 1 "$repo")
  h3=$(by_hand_ms 3 "$repo")
  hn=$(by_hand_ms "$FANOUT_N" "$repo")
  row "deploy to 3 agents (vs 1 agent), ms" "$m3" "$m1" "$(ratio "$m3" "$m1")"
  row "floor: 3 apps started at once by hand (vs 1)" "$h3" "$h1" "$(ratio "$h3" "$h1")"
  row "deploy to $FANOUT_N agents (vs 1 agent), ms" "$mn" "$m1" "$(ratio "$mn" "$m1")"
  row "floor: $FANOUT_N apps started at once by hand (vs 1)" "$hn" "$h1" "$(ratio "$hn" "$h1")"
}


rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Idle memory with 0 and 20 deployments; health endpoint throughput.
bench_agent() {
  make_repo
  local repo="$REPO"
  start_agent 127.0.0.200
  local grpc="$AGENT_GRPC" http="$AGENT_HTTP" pid="$AGENT_PID"
  sleep 3
  local rss0; rss0=$(rss_kib "$pid")
  local proj="$WORK/project-agent"; mkdir -p "$proj"
  "$BIN/deployctl" --project "$proj" declare env agent bench --address "http://$grpc" >/dev/null
  for i in $(seq 1 20); do
    "$BIN/deployctl" --project "$proj" run "bench-$i" --env bench --repo "$repo" \
      --command "python3 app.py" --port $((8100 + i)) --health-path / >/dev/null
  done
  sleep 5
  local rss20; rss20=$(rss_kib "$pid")
  row "agent RSS idle, 20 deployments (vs 0), KiB" "$rss20" "$rss0" "$(ratio "$rss20" "$rss0")"
  rps() {
    wrk -t2 -c32 -d"${SECONDS_EACH}s" "$1" 2>&1 | awk '/^Requests\/sec:/ {printf "%.0f", $2}'
  }
  local r_healthz r_dep
  r_healthz=$(rps "http://$http/healthz")
  r_dep=$(rps "http://$http/deployments/bench-1/health")
  row "GET /deployments/NAME/health req/s (vs /healthz)" "$r_dep" "$r_healthz" "$(ratio "$r_dep" "$r_healthz")"
}

[[ -z "$ONLY" || "$ONLY" == agent ]] && bench_agent
[[ -z "$ONLY" || "$ONLY" == fanout ]] && bench_fanout

echo
printf '| %-44s | %12s | %12s | %7s |\n' "measurement" "value" "baseline" "ratio"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..9})"
printf '%s\n' "${ROWS[@]}"
