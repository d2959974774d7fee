# The `sleep` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, REPO, row,
# median, ratio, start_agent, make_repo and NOTES): what a wake costs. A stdlib app deployed
# with `--idle-timeout 1s` falls asleep; the time of the first request to it through the
# node proxy (held while the agent starts the app and checks it) vs the app's own
# start-to-healthy time (the same app started by hand and polled every 2 ms, by the same
# Python client); medians of BENCH_SLEEP_ROUNDS (default 5); target: the wake adds <= 50 ms.

SLEEP_AGENT_IP=127.0.0.224
SLEEP_ROUNDS="${BENCH_SLEEP_ROUNDS:-5}"

# Milliseconds of one GET of $1 (any answer).
first_request_ms() {
  python3 - "$1" <<'PY'
import sys, time, urllib.request
t0 = time.perf_counter()
with urllib.request.urlopen(sys.argv[1], timeout=120) as r:
    r.read()
print(round((time.perf_counter() - t0) * 1000))
PY
}

# Milliseconds from starting the app in $1 on $2 to its first 200.
start_to_healthy_ms() {
  python3 - "$1" "$2" <<'PY'
import http.client, os, socket, subprocess, sys, time
repo, host = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind((host, 0)); port = s.getsockname()[1]; s.close()
t0 = time.perf_counter()
p = subprocess.Popen([sys.executable, "app.py"], cwd=repo,
                     env=dict(os.environ, HOST=host, PORT=str(port)),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while True:
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", "/")
            r = c.getresponse(); r.read(); c.close()
            if r.status == 200:
                break
        except OSError:
            time.sleep(0.002)
    print(round((time.perf_counter() - t0) * 1000))
finally:
    p.kill(); p.wait()
PY
}

# Waits (up to 30 s) until deployment $2 of project $1 is in state $3.
wait_state() {
  local proj="$1" name="$2" want="$3" deadline=$((SECONDS + 30)) state
  while :; do
    state=$("$BIN/deployctl" --project "$proj" status "$name" --output json 2>/dev/null \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["deployments"][0]["instances"][0]["state"])' 2>/dev/null || true)
    [[ "$state" == "$want" ]] && return 0
    (( SECONDS < deadline )) || { NOTES+=("sleep: $name not $want after 30 s (was: $state)"); return 1; }
    sleep 0.1
  done
}

bench_sleep() {
  make_repo
  local proj="$WORK/project-sleep" round wakes=() starts=()
  mkdir -p "$proj"
  start_agent "$SLEEP_AGENT_IP"
  "$BIN/deployctl" --project "$proj" declare env agent a --address "http://$AGENT_GRPC" >/dev/null
  "$BIN/deployctl" --project "$proj" run sleepy --env a --repo "$REPO" \
    --command "python3 app.py" --port 8000 --health-path / --idle-timeout 1s >/dev/null
  for round in $(seq 1 "$SLEEP_ROUNDS"); do
    wait_state "$proj" sleepy sleeping || return 0
    wakes+=("$(first_request_ms "http://$SLEEP_AGENT_IP:8000/")")
    starts+=("$(start_to_healthy_ms "$REPO" "$SLEEP_AGENT_IP")")
  done
  local wake start
  wake=$(median "${wakes[@]}"); start=$(median "${starts[@]}")
  row "wake: first request to a sleeping app, ms" "$wake" "$start" "$(ratio "$wake" "$start")"
  row "wake: added to the app's start (target <= 50), ms" "$((wake - start))" "0" "-"
  NOTES+=("sleep: wakes ${wakes[*]} ms; the app's own start ${starts[*]} ms")
}
