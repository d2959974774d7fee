#!/usr/bin/env bash
# Benchmarks, printed as one table: each row with its baseline measured in the same run and
# the ratio. Bounded in time (a few minutes); cleans up everything it started. Builds the
# release binaries first (BENCH_SKIP_BUILD=1 to use target/release as it is).
#
#   scripts/bench.sh                    # every row
#   BENCH_ONLY=deploy scripts/bench.sh  # one group: deploy | bigenv | status | agent | fleet | proxy | walls | registry | artifacts | sleep | autoscale
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
#   fleet    envs of 1, 10 and FLEET_N (default 100) agents on this machine: `run` of a stdlib
#            app to each vs the floor (as many apps started by hand at once), `status` and
#            `nodes` across them, the CLI's peak memory (scripts/lib/bench_fleet.sh)
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
#   registry agents announcing themselves in etcd (REGISTRY_N of them, at most 10): until a
#            fleet env lists them all vs until they were ready; `nodes` on the fleet env vs on
#            a typed env of the same agents; a killed agent gone from the fleet vs its
#            register_ttl (2 s)
#   artifacts a 1 GiB model file (BENCH_ARTIFACT_MIB) served on loopback by a sendfile server
#            (scripts/lib/file_server.py) and by python3 -m http.server: the agent's first
#            download (transfer, sha256, fsync, into the store) vs curl of the same file from
#            the same server, per server (target >= 0.9x); a warm
#            redeploy (new commit) of a stdlib app with the file already on the node vs
#            the same app without it, in turns (target <= 50 ms more); medians of BENCH_ROUNDS
#            downloads and BENCH_ARTIFACT_REDEPLOYS (default 11) redeploys
#   sleep    a stdlib app with --idle-timeout 1s: the first request to it asleep (the wake)
#            vs the app's own start-to-healthy time by hand (scripts/lib/bench_sleep.sh);
#            target: + <= 50 ms
#   autoscale replicas that follow the load: an app serving one request at a time in 200 ms
#            under a step load (1 client, then 8): p50/p99 latency with replicas 1..4
#            (target_in_flight 2, scale_up_after 3s) vs a fixed single replica, and the time
#            from the step to 4 replicas running (scripts/lib/bench_autoscale.sh)
# After the table: the agent's own step times (deploy events' elapsed_ms) of a cold deploy
# and of the warm redeploys. Installs what it needs when missing, like scripts/test.sh (wrk
# and curl with apt-get, uv with pip); needs git, python3 (with venv and pip) and access to
# PyPI for the deploy group.
#
# Loopback: agents on 127.0.0.200-210 (agent), 127.0.1.x (fleet), .216-218 (bigenv), .220-223 (status,
# deploy), .241-243 (proxy; HAProxy on .244), .244 (etcd) with .245-254 (registry), .246 (artifacts); git daemon on
# .229; autoscale on .212; apps by hand on .226-228, .231-240 and 127.0.3.x (fleet); the artifacts' file server on .247.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C

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
  commit_repo "$repo"
}

# Makes the directory $1 a git repository with one commit of what it holds.
commit_repo() {
  git -C "$1" init -q -b main
  git -C "$1" add .
  git -C "$1" -c user.name=bench -c user.email=bench@localhost commit -qm app
}

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

source scripts/lib/bench_deploy.sh
source scripts/lib/bench_walls.sh
source scripts/lib/bench_proxy.sh
source scripts/lib/bench_proxy_faults.sh
source scripts/lib/bench_fleet.sh
source scripts/lib/bench_registry.sh
source scripts/lib/bench_artifacts.sh
source scripts/lib/bench_sleep.sh
source scripts/lib/bench_autoscale.sh

[[ -z "$ONLY" || "$ONLY" == deploy ]] && bench_deploy
[[ -z "$ONLY" || "$ONLY" == bigenv ]] && bench_bigenv
[[ -z "$ONLY" || "$ONLY" == status ]] && bench_status
[[ -z "$ONLY" || "$ONLY" == agent ]] && bench_agent
[[ -z "$ONLY" || "$ONLY" == fleet || "$ONLY" == fanout ]] && bench_fleet
[[ -z "$ONLY" || "$ONLY" == proxy ]] && bench_proxy
[[ -z "$ONLY" || "$ONLY" == walls ]] && bench_walls
[[ -z "$ONLY" || "$ONLY" == registry ]] && bench_registry
[[ -z "$ONLY" || "$ONLY" == artifacts ]] && bench_artifacts
[[ -z "$ONLY" || "$ONLY" == sleep ]] && bench_sleep
[[ -z "$ONLY" || "$ONLY" == autoscale ]] && bench_autoscale

echo
printf '| %-50s | %12s | %12s | %7s |\n' "measurement" "value" "baseline" "ratio"
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..52})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..9})"
printf '%s\n' "${ROWS[@]}"
echo
for note in "${NOTES[@]}"; do echo "$note"; done
echo "bench took $((SECONDS - BENCH_STARTED)) s"
