#!/usr/bin/env bash
# Benchmarks, printed as one table: each row with its baseline measured in the same run and
# the ratio. Bounded in time (a few minutes); cleans up everything it started. Builds the
# release binaries first (BENCH_SKIP_BUILD=1 to use target/release as it is).
#
#   scripts/bench.sh                    # every row
#   BENCH_ONLY=deploy scripts/bench.sh  # one group: deploy | bigenv | status | agent | fanout | proxy | walls
#
# Rows:
#   deploy   a FastAPI + uvicorn app (fastapi and uvicorn from PyPI) in a git repository
#            served by `git daemon` on loopback (git://):
#            - cold deploy: a fresh agent (empty data dir, empty uv cache) deploys it, vs a
#              bash script doing it by hand with pip (git clone; python3 -m venv; pip install;
#              start; poll) and vs the uv floor by hand (git clone --depth 1; uv venv;
#              uv pip install --compile-bytecode; start; poll), each with an empty cache;
#            - warm redeploy of a new commit with the same packages (`deployctl run --load`)
#              vs a bash script doing it by hand (git fetch; checkout; reuse the env; stop the
#              old app; start; poll);
#            - the app's own start-to-healthy time (uvicorn started by hand in the env the
#              agent built, polled), and the agent's overhead: warm redeploy minus that;
#            medians of BENCH_ROUNDS (cold, default 3) and BENCH_WARM_ROUNDS (default 5)
#   status   Status RPC latency p50/p99 with STATUS_DEPLOYMENTS (default 100) stdlib apps
#            deployed on one agent, vs the same agent with one deployment
#            (tests/src/bin/status_latency.rs, BENCH_STATUS_CALLS calls, default 2000)
#   agent    the agent's idle RSS with 0 and with 20 deployments; requests per second of
#            GET /healthz and GET /deployments/NAME/health (wrk, loopback, BENCH_SECONDS each;
#            both answer from the agent's cached state)
#   fanout   deploying a stdlib app to 3 and to N agents vs to 1 (concurrent fan-out), and
#            the machine's own floor: N apps started at once by hand
#   proxy    the node proxy: requests that failed while a stdlib app was redeployed 10
#            times under a client loop (strategy switch, vs strategy recreate); the switch
#            step (healthy -> routed) vs recreate's outage (stop -> healthy); requests per
#            second through the proxy vs the same backend direct (tests/src/bin/fast_backend,
#            a hyper server, so the proxy is the bottleneck; wrk -t2 -c32) and vs HAProxy
#            (Debian's, installed when missing) in front of the same backend, medians of
#            BENCH_PROXY_ROUNDS (3) rounds of the three in turn, and the CPU time each proxy
#            spends per request; latency p50/p99
#            with one connection (wrk -t1 -c1) through the proxy vs direct; connections
#            refused while the proxy is killed with -9 under a client loop (and the longest
#            wait for an answer), and how long a frozen proxy (kill -STOP) takes to show in
#            its deployment's health endpoint and to be replaced; and (group status) the
#            proxy's RSS with 100 routes vs 1
#   walls    what each deployment's walls cost a warm redeploy (a new commit of a stdlib app):
#            the agent as root (the deployment's own user, its checkout given to it, a mount
#            namespace, cgroups) vs the same agent run as an unprivileged user (none of it),
#            with the app alone and with a 10,000-file checkout; medians of
#            BENCH_WARM_ROUNDS; target: the walls add <= 20 ms
# After the table: the agent's own step times (deploy events' elapsed_ms) of a cold deploy
# and of the warm redeploys. Installs what it needs when missing, like scripts/test.sh (wrk
# and curl with apt-get, uv with pip); needs git, python3 (with venv and pip) and access to
# PyPI for the deploy group.
#
# Loopback addresses: agents on 127.0.0.200-210 (agent, fanout), 127.0.0.216-218 (bigenv), 127.0.0.220-223
# (status, deploy) and 127.0.0.241-243 (proxy; HAProxy on 127.0.0.244); git daemon on 127.0.0.229; apps started by hand on 127.0.0.226-228 and
# 127.0.0.231-240.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C

FANOUT_N="${FANOUT_N:-10}"
SECONDS_EACH="${BENCH_SECONDS:-5}"
ONLY="${BENCH_ONLY:-}"
ROUNDS="${BENCH_ROUNDS:-3}"
WARM_ROUNDS="${BENCH_WARM_ROUNDS:-5}"
STATUS_DEPLOYMENTS="${STATUS_DEPLOYMENTS:-100}"
STATUS_CALLS="${BENCH_STATUS_CALLS:-2000}"
LIMIT="${BENCH_TIMEOUT:-600}"

# What the rows need, installed like scripts/test.sh does (a fresh machine runs this first).
source scripts/lib/tools.sh
ensure_apt_tool wrk wrk >&2
ensure_apt_tool curl curl >&2
ensure_uv >&2
if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release --quiet --bin deploy-agent --bin deployctl --bin status_latency --bin fast_backend
fi
BIN="$PWD/target/release"
WORK="$(mktemp -d /tmp/deployctl-bench-XXXXXX)"
# As root the agents run each app as its own user, who passes through to its release.
chmod 711 "$WORK"
PIDS=()
cleanup() {
  exec 2>/dev/null
  if [[ -n "${WATCHDOG:-}" ]]; then
    local sleeper; sleeper=$(pgrep -P "$WATCHDOG" || true)
    kill "$WATCHDOG" || true
    [[ -z "$sleeper" ]] || kill $sleeper || true
  fi
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Apps outlive their agents by design: kill every app process group the agents started.
  local pid
  # The node proxies run in sessions of their own (they outlive their agents by design).
  local pidfile
  for pidfile in "$WORK"/agent-*/data/proxy/proxy.pid; do
    [[ -f "$pidfile" ]] && { kill -9 "$(awk '{print $1}' "$pidfile")" 2>/dev/null || true; }
  done
  for pid in $(python3 -c '
import glob, json, sys
for rec in glob.glob(sys.argv[1] + "/agent-*/data/deployments/*/deployment.json"):
    try:
        pid = json.load(open(rec)).get("pid")
    except Exception:
        pid = None
    if pid:
        print(pid)' "$WORK"); do
    kill -9 -- "-$pid" 2>/dev/null || true
  done
  # And any process still running in the bench's directory (an app whose deploy was cut
  # short, a by-hand app).
  local proc
  for proc in /proc/[0-9]*; do
    [[ "$(readlink "$proc/cwd" 2>/dev/null)" == "$WORK"/* ]] && { kill -9 "${proc#/proc/}" 2>/dev/null || true; }
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
# The whole run is bounded: after BENCH_TIMEOUT seconds the watchdog stops it (and the
# cleanup still runs).
trap 'exit 124' TERM
( trap - TERM; sleep "$LIMIT" & wait $!
  echo "bench.sh: stopped after ${LIMIT} s (BENCH_TIMEOUT)" >&2
  kill -TERM $$ 2>/dev/null; pkill -TERM -P $$ 2>/dev/null ) &
WATCHDOG=$!

ROWS=()
NOTES=()
row() { ROWS+=("$(printf '| %-50s | %12s | %12s | %7s |' "$1" "$2" "$3" "$4")"); }
now() { date +%s.%N; }
elapsed_ms() { python3 -c "import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))" "$1" "$2"; }
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}x' if b else '-')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Starts an agent on loopback address $1 (its apps bind there too), with the environment
# variables VAR=VALUE given after it; sets AGENT_GRPC, AGENT_HTTP, AGENT_PID and AGENT_DIR.
# Not in a subshell, so its pid is recorded for the cleanup.
start_agent() {
  local ip="$1" dir="$WORK/agent-$1"
  shift
  mkdir -p "$dir"
  AGENT_DIR="$dir"
  env "$@" "$BIN/deploy-agent" --listen "$ip:0" --http-listen "$ip:0" --data-dir "$dir/data" \
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
    "$BIN/deployctl" --project "$proj" remove "app-$env" --drain 0s >/dev/null
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


# ---- deploy: a FastAPI app, cold and warm, agent vs by hand --------------------------------

GIT_IP=127.0.0.229
FASTAPI_PIP=(fastapi uvicorn)
FASTAPI_CMD='uvicorn app:app --host $HOST --port $PORT'

# Microseconds since the epoch, without a process (bash 5).
now_us() { local t="${EPOCHREALTIME/./}"; echo "${t#0}"; }
ms_since() { echo $(( ($(now_us) - $1) / 1000 )); }

# Waits (up to $2 s, default 120) until GET $1 answers 2xx: a TCP connect polled in bash every
# ~5 ms (no process per try), then curl.
wait_http() {
  local url="$1" deadline=$((SECONDS + ${2:-120})) hostport host port
  hostport="${url#http://}"; hostport="${hostport%%/*}"
  host="${hostport%:*}"; port="${hostport##*:}"
  until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
    (( SECONDS < deadline )) || return 1
    sleep 0.005
  done
  until curl -fs -o /dev/null "$url"; do
    (( SECONDS < deadline )) || return 1
    sleep 0.005
  done
}

# The FastAPI app in a git repository served by git daemon on $GIT_IP (made once); sets
# FASTAPI_URL. Each `fastapi_commit` makes a new commit with the same packages.
make_fastapi_repo() {
  local repo="$WORK/git/fastapi"
  FASTAPI_URL="git://$GIT_IP/fastapi"
  [[ -d "$repo/.git" ]] && return
  mkdir -p "$repo"
  cat > "$repo/app.py" <<'EOF'
import os
from fastapi import FastAPI
app = FastAPI()
RELEASE = open(os.path.join(os.path.dirname(__file__), "RELEASE")).read().strip()
@app.get("/health")
def health():
    return {"ok": True}
@app.get("/")
def root():
    return {"release": RELEASE}
EOF
  echo 0 > "$repo/RELEASE"
  git -C "$repo" init -q -b main
  git -C "$repo" add .
  git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -qm app
  # git-daemon itself, not `git daemon` (which would run it as a child the cleanup misses).
  "$(git --exec-path)/git-daemon" --reuseaddr --export-all --base-path="$WORK/git" --listen="$GIT_IP" --port=9418 \
    "$WORK/git" > "$WORK/git-daemon.log" 2>&1 &
  PIDS+=($!)
  local deadline=$((SECONDS + 10))
  until git ls-remote "$FASTAPI_URL" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || { echo "git daemon did not start" >&2; cat "$WORK/git-daemon.log" >&2; exit 1; }
    sleep 0.05
  done
}

fastapi_commit() {
  local repo="$WORK/git/fastapi"
  echo "$1" > "$repo/RELEASE"
  git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -qam "release $1"
}

# Starts uvicorn by hand: $1 app dir, $2 env dir, $3 host; sets APP_PID.
start_uvicorn() {
  (cd "$1" && exec "$2/bin/uvicorn" app:app --host "$3" --port 8000) >> "$WORK/by-hand.log" 2>&1 &
  APP_PID=$!
  PIDS+=("$APP_PID")
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The bash baseline: clone, python3 -m venv, pip install, start, poll. Sets RESULT_MS.
pip_script() {
  local d="$WORK/by-hand/pip-$1" ip=127.0.0.226 t0
  mkdir -p "$d"
  t0=$(now_us)
  git clone -q "$FASTAPI_URL" "$d/app"
  python3 -m venv "$d/app/.venv"
  PIP_CACHE_DIR="$d/pip-cache" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$d/app/.venv/bin/pip" install -q "${FASTAPI_PIP[@]}"
  start_uvicorn "$d/app" "$d/app/.venv" "$ip"
  wait_http "http://$ip:8000/health"
  RESULT_MS=$(ms_since "$t0")
  stop_pid "$APP_PID"
}

# The uv floor by hand: shallow clone, uv venv, uv pip install --compile-bytecode (empty
# cache), start, poll. Leaves the app running (APP_PID); sets RESULT_MS and UV_APP.
uv_floor() {
  local d="$WORK/by-hand/uv-$1" ip=127.0.0.227 t0
  mkdir -p "$d"
  t0=$(now_us)
  git clone -q --depth 1 "$FASTAPI_URL" "$d/app"
  UV_CACHE_DIR="$d/uv-cache" uv venv -q --python python3 "$d/app/.venv"
  UV_CACHE_DIR="$d/uv-cache" uv pip install -q --python "$d/app/.venv/bin/python" \
    --compile-bytecode "${FASTAPI_PIP[@]}"
  start_uvicorn "$d/app" "$d/app/.venv" "$ip"
  wait_http "http://$ip:8000/health"
  RESULT_MS=$(ms_since "$t0")
  UV_APP="$d/app"
}

# `deployctl run` of the FastAPI app on a fresh agent on $1 (empty data dir and uv cache).
# Sets RESULT_MS, COLD_PROJ, COLD_AGENT_DIR and COLD_ENV (the environment it built).
agent_cold() {
  local ip="$1" t0
  start_agent "$ip" UV_CACHE_DIR="$WORK/agent-$ip/uv-cache"
  COLD_AGENT_DIR="$AGENT_DIR"
  COLD_PROJ="$WORK/project-cold-$ip"
  mkdir -p "$COLD_PROJ"
  "$BIN/deployctl" --project "$COLD_PROJ" declare env agent cold --address "http://$AGENT_GRPC" >/dev/null
  local pips=()
  for p in "${FASTAPI_PIP[@]}"; do pips+=(--pip "$p"); done
  t0=$(now_us)
  "$BIN/deployctl" --project "$COLD_PROJ" run api --env cold --repo "$FASTAPI_URL" \
    --command "$FASTAPI_CMD" "${pips[@]}" --port 8000 --health-path /health \
    --output json > "$COLD_AGENT_DIR/cold.json"
  RESULT_MS=$(ms_since "$t0")
  local key
  key=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if "packages_hash" in e: print(e["packages_hash"])' "$COLD_AGENT_DIR/cold.json")
  COLD_ENV="$COLD_AGENT_DIR/data/envs/$key"
}

# The median of each step's elapsed_ms over deploy event files (JSON lines), one line.
step_summary() {
  python3 - "$@" <<'EOF'
import json, re, statistics, sys
steps = {}
for path in sys.argv[1:]:
    for line in open(path):
        e = json.loads(line)
        if e.get("phase") in ("done", "failed") and e.get("step"):
            steps.setdefault(e["step"], []).append(e.get("elapsed_ms", 0))
        # "stopped release N (...): port P free after X ms" / "... to free port P in X ms"
        m = re.search(r"port \d+ (?:free after|in) (\d+) ms", e.get("message") or "")
        if e.get("phase") == "info" and m:
            steps.setdefault("stop previous", []).append(int(m.group(1)))
print(", ".join(f"{s} {statistics.median(v):.0f} ms" for s, v in steps.items()))
EOF
}

bench_deploy() {
  make_fastapi_repo
  local pip_ms=() uv_ms=() cold_ms=() round
  for round in $(seq 1 "$ROUNDS"); do
    pip_script "$round"; pip_ms+=("$RESULT_MS")
    uv_floor "$round"; uv_ms+=("$RESULT_MS")
    stop_pid "$APP_PID"
    # A fresh agent each round; the last one stays for the warm rounds.
    agent_cold "127.0.0.$((220 + round))"; cold_ms+=("$RESULT_MS")
    if (( round < ROUNDS )); then
      "$BIN/deployctl" --project "$COLD_PROJ" remove api --drain 0s >/dev/null
    fi
  done
  local pip uv cold
  pip=$(median "${pip_ms[@]}"); uv=$(median "${uv_ms[@]}"); cold=$(median "${cold_ms[@]}")
  row "cold deploy vs pip script, ms (<=0.30x)" "$cold" "$pip" "$(ratio "$cold" "$pip")"
  row "cold deploy vs uv floor by hand, ms (<=1.2x)" "$cold" "$uv" "$(ratio "$cold" "$uv")"

  # Warm: a new commit, same packages. The agent's last cold deploy keeps running, and so
  # does the by-hand app in the last uv floor's clone, each stopped by its redeploy.
  local hand_ip=127.0.0.227
  start_uvicorn "$UV_APP" "$UV_APP/.venv" "$hand_ip"
  local hand_pid="$APP_PID"
  wait_http "http://$hand_ip:8000/health"
  local warm_ms=() hand_ms=() start_ms=() t0
  for round in $(seq 1 "$WARM_ROUNDS"); do
    fastapi_commit "$round"
    t0=$(now_us)
    "$BIN/deployctl" --project "$COLD_PROJ" run --load api --output json \
      > "$COLD_AGENT_DIR/warm-$round.json"
    warm_ms+=("$(ms_since "$t0")")

    t0=$(now_us)
    git -C "$UV_APP" fetch -q --depth 1 origin main
    git -C "$UV_APP" checkout -q --detach FETCH_HEAD
    stop_pid "$hand_pid"
    start_uvicorn "$UV_APP" "$UV_APP/.venv" "$hand_ip"
    hand_pid="$APP_PID"
    wait_http "http://$hand_ip:8000/health"
    hand_ms+=("$(ms_since "$t0")")

    # The app's own start: uvicorn in the environment the agent built, polled by hand.
    t0=$(now_us)
    start_uvicorn "$UV_APP" "$COLD_ENV" 127.0.0.228
    wait_http "http://127.0.0.228:8000/health"
    start_ms+=("$(ms_since "$t0")")
    stop_pid "$APP_PID"
  done
  stop_pid "$hand_pid"
  local warm hand start
  warm=$(median "${warm_ms[@]}"); hand=$(median "${hand_ms[@]}"); start=$(median "${start_ms[@]}")
  row "warm redeploy vs bash script, ms" "$warm" "$hand" "$(ratio "$warm" "$hand")"
  row "warm redeploy vs app start-to-healthy, ms" "$warm" "$start" "$(ratio "$warm" "$start")"
  row "agent overhead (warm - app start; <=300), ms" "$((warm - start))" "$((hand - start))" \
    "$(ratio "$((warm - start))" "$((hand - start))")"
  NOTES+=("cold deploy steps (agent): $(step_summary "$COLD_AGENT_DIR/cold.json")")
  NOTES+=("warm redeploy steps (agent, medians): $(step_summary "$COLD_AGENT_DIR"/warm-*.json)")
}

# ---- status: Status latency with many deployments on one agent ------------------------------

bench_status() {
  make_repo
  local repo="$REPO" ip=127.0.0.220
  start_agent "$ip"
  local grpc="http://$AGENT_GRPC" proj="$WORK/project-status"
  mkdir -p "$proj"
  "$BIN/deployctl" --project "$proj" declare env agent many --address "$grpc" >/dev/null
  deploy_stdlib() {
    "$BIN/deployctl" --project "$proj" run "s-$1" --env many --repo "$repo" \
      --command "python3 app.py" --port $((9300 + $1)) --health-path / >/dev/null
  }
  deploy_stdlib 0
  local proxy_pid proxy1
  proxy_pid=$(awk '{print $1}' "$AGENT_DIR/data/proxy/proxy.pid")
  proxy1=$(rss_kib "$proxy_pid")
  local one many
  read -r -a one <<< "$("$BIN/status_latency" "$grpc" "$STATUS_CALLS")"
  # The other deployments, four at a time (the state file is locked; the agent takes them
  # all at once).
  local i batch=()
  for i in $(seq 1 $((STATUS_DEPLOYMENTS - 1))); do
    deploy_stdlib "$i" &
    batch+=($!)
    PIDS+=($!)
    if (( ${#batch[@]} == 4 )); then wait "${batch[@]}" || true; batch=(); fi
  done
  (( ${#batch[@]} == 0 )) || wait "${batch[@]}" || true
  read -r -a many <<< "$("$BIN/status_latency" "$grpc" "$STATUS_CALLS")"
  if [[ "${many[3]}" != "$STATUS_DEPLOYMENTS" ]]; then
    echo "status: expected $STATUS_DEPLOYMENTS deployments, the agent has ${many[3]}" >&2
  fi
  row "status p50, ${many[3]} deployments (vs 1), ms" "${many[0]}" "${one[0]}" "$(ratio "${many[0]}" "${one[0]}")"
  local proxy100; proxy100=$(rss_kib "$proxy_pid")
  row "node proxy RSS, ${many[3]} routes (vs 1), KiB" "$proxy100" "$proxy1" "$(ratio "$proxy100" "$proxy1")"
  row "status p99, ${many[3]} deployments (vs 1; <=10), ms" "${many[1]}" "${one[1]}" "$(ratio "${many[1]}" "${one[1]}")"
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

BENCH_STARTED=$SECONDS
# A big venv (MLflow: ~620 MB, over a hundred packages) with a warm uv cache: the agent's
# cold deploy (clone, venv, install, start a stdlib app, health) on a fresh agent vs the
# floor, `uv venv` + `uv pip install` into a fresh venv without compiling bytecode (the
# agent compiles in the background after answering); and what compiling at install costs.
BIG_PIP="${BENCH_BIG_PIP:-mlflow}"
bench_bigenv() {
  make_repo
  local cache="$WORK/big-uv-cache" floor=() cold=() compiled=() round t0 v
  echo "bigenv: warming uv's cache with $BIG_PIP" >&2
  uv venv -q --python python3 "$WORK/big-warm"
  UV_CACHE_DIR="$cache" uv pip install -q --python "$WORK/big-warm/bin/python" "$BIG_PIP"
  for round in 1 2 3; do
    v="$WORK/big-floor-$round"
    t0=$(now_us)
    UV_CACHE_DIR="$cache" uv venv -q --python python3 "$v"
    UV_CACHE_DIR="$cache" uv pip install -q --python "$v/bin/python" "$BIG_PIP"
    floor+=("$(ms_since "$t0")")
    rm -rf "$v"
    local ip="127.0.0.21$((5 + round))" proj="$WORK/project-big-$round"
    start_agent "$ip" UV_CACHE_DIR="$cache"
    mkdir -p "$proj"
    "$BIN/deployctl" --project "$proj" declare env agent big --address "http://$AGENT_GRPC" >/dev/null
    t0=$(now_us)
    "$BIN/deployctl" --project "$proj" run big --env big --repo "$REPO" --command "python3 app.py" \
      --pip "$BIG_PIP" --port 8000 --health-path / --output json > "$proj/events.json"
    cold+=("$(ms_since "$t0")")
    # The background bytecode compile (nice 19) would share the cores with the next round.
    local deadline=$((SECONDS + 120))
    until compgen -G "$AGENT_DIR/data/envs/*/.deploy-agent-compiled" >/dev/null; do
      (( SECONDS < deadline )) || break
      sleep 0.2
    done
    "$BIN/deployctl" --project "$proj" remove big --drain 0s >/dev/null
    kill "$AGENT_PID" 2>/dev/null || true
  done
  v="$WORK/big-compiled"
  UV_CACHE_DIR="$cache" uv venv -q --python python3 "$v"
  t0=$(now_us)
  UV_CACHE_DIR="$cache" uv pip install -q --compile-bytecode --python "$v/bin/python" "$BIG_PIP"
  compiled+=("$(ms_since "$t0")")
  local f c k
  f=$(median "${floor[@]}"); c=$(median "${cold[@]}"); k=$(median "${compiled[@]}")
  row "$BIG_PIP cold deploy, warm uv cache, ms (<=1.2x)" "$c" "$f" "$(ratio "$c" "$f")"
  row "$BIG_PIP install with --compile-bytecode, ms" "$k" "$f" "$(ratio "$k" "$f")"
  NOTES+=("$BIG_PIP cold deploy steps (agent): $(step_summary "$WORK"/project-big-*/events.json)")
  NOTES+=("bigenv: baseline = uv venv + uv pip install $BIG_PIP (no bytecode) into a fresh venv, same warm cache; the agent compiles a new venv's bytecode after the deploy has answered (nice 19)")
}

source scripts/lib/bench_walls.sh
source scripts/lib/bench_proxy.sh
source scripts/lib/bench_proxy_faults.sh

[[ -z "$ONLY" || "$ONLY" == deploy ]] && bench_deploy
[[ -z "$ONLY" || "$ONLY" == bigenv ]] && bench_bigenv
[[ -z "$ONLY" || "$ONLY" == status ]] && bench_status
[[ -z "$ONLY" || "$ONLY" == agent ]] && bench_agent
[[ -z "$ONLY" || "$ONLY" == fanout ]] && bench_fanout
[[ -z "$ONLY" || "$ONLY" == proxy ]] && bench_proxy
[[ -z "$ONLY" || "$ONLY" == walls ]] && bench_walls

echo
printf '| %-50s | %12s | %12s | %7s |\n' "measurement" "value" "baseline" "ratio"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..52})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..9})"
printf '%s\n' "${ROWS[@]}"
echo
for note in "${NOTES[@]}"; do echo "$note"; done
echo "bench took $((SECONDS - BENCH_STARTED)) s"
