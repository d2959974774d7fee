# The `deploy` and `bigenv` groups of scripts/bench.sh (sourced by it: uses its BIN, WORK,
# PIDS, REPO, ROUNDS, WARM_ROUNDS, start_agent, make_repo, now_us, ms_since, wait_http,
# median, ratio, row and NOTES).

# ---- deploy: a FastAPI app, cold and warm, agent vs by hand --------------------------------

GIT_IP=127.0.0.229
FASTAPI_PIP=(fastapi uvicorn)
FASTAPI_CMD='uvicorn app:app --host $HOST --port $PORT'

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
