# The `fleet` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS, start_agent,
# make_repo, REPO, now_us, ms_since, median, ratio, row and NOTES): one env of 1, of 10 and of
# FLEET_N (default 100) agents on this machine, each agent on its own 127.0.x.y.
#   - `run` of a stdlib app to each env (all agents at once) vs the machine's floor: as many
#     copies of the same app started by hand at once, each seen answering;
#   - `status` and `nodes` across each env (medians of 5) vs one agent;
#   - a rolling `run --max-parallel 20`, and `status` with one agent frozen (SIGSTOP), which
#     may cost at most its --timeout;
#   - the CLI's peak memory (max RSS) for `run`, `status` and `nodes` across FLEET_N agents.
# Agents: 127.0.1.1 and up; apps started by hand: 127.0.3.1 and up (one address each, port
# 8200).

FLEET_N="${FLEET_N:-${FANOUT_N:-100}}"

# The loopback address of the $1-th (1-based) agent or app of a block starting at 127.0.$2.1.
fleet_ip() { echo "127.0.$(($2 + ($1 - 1) / 250)).$((($1 - 1) % 250 + 1))"; }

# Median ms (of $3 rounds) of `deployctl ARGS...` (after $1 $2: project, rounds).
fleet_cli_ms() {
  local proj="$1" rounds="$2" times=() t0
  shift 2
  for _ in $(seq 1 "$rounds"); do
    t0=$(now_us)
    "$BIN/deployctl" --project "$proj" "$@" >"$WORK/fleet-cli.out" 2>&1 \
      || { echo "fleet: deployctl $* failed:" >&2; tail -5 "$WORK/fleet-cli.out" >&2; }
    times+=("$(ms_since "$t0")")
  done
  median "${times[@]}"
}

# Peak RSS (KiB) of `deployctl ARGS...` run from project $1.
fleet_cli_kib() {
  local proj="$1"
  shift
  python3 - "$BIN/deployctl" --project "$proj" "$@" <<'EOF'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
EOF
}

# Median ms (of 3) of a `run` of the stdlib app to env $1 (removed after each).
fleet_run_ms() {
  local env="$1" proj="$2" times=() t0
  for round in 1 2 3; do
    t0=$(now_us)
    "$BIN/deployctl" --project "$proj" run "app-$env" --env "$env" --repo "$REPO" \
      --command "python3 app.py" --port $((8100 + round)) --health-path / >/dev/null 2>&1 \
      || echo "fleet: run to $env failed (round $round)" >&2
    times+=("$(ms_since "$t0")")
    "$BIN/deployctl" --project "$proj" remove "app-$env" --drain 0s >/dev/null 2>&1 || true
  done
  median "${times[@]}"
}

# Median ms (of 3) to start $1 copies of the app by hand at once and see each answer.
fleet_floor_ms() {
  local n="$1" times=()
  for _ in 1 2 3; do
    local t0 pids=() i ip
    t0=$(now_us)
    for i in $(seq 1 "$n"); do
      ip=$(fleet_ip "$i" 3)
      (cd "$REPO" && HOST="$ip" PORT=8200 exec python3 app.py) >/dev/null 2>&1 &
      pids+=($!)
    done
    for i in $(seq 1 "$n"); do
      ip=$(fleet_ip "$i" 3)
      until curl -fs -o /dev/null "http://$ip:8200/"; do sleep 0.01; done
    done
    times+=("$(ms_since "$t0")")
    kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true
  done
  median "${times[@]}"
}

bench_fleet() {
  make_repo
  local addrs=() i t0
  t0=$(now_us)
  for i in $(seq 1 "$FLEET_N"); do
    start_agent "$(fleet_ip "$i" 1)"
    addrs+=(--address "http://$AGENT_GRPC")
  done
  local last_agent=$AGENT_PID
  NOTES+=("fleet: $FLEET_N agents started in $(ms_since "$t0") ms (one after another)")
  local proj="$WORK/project-fleet"
  mkdir -p "$proj"
  "$BIN/deployctl" --project "$proj" declare env agent one "${addrs[@]:0:2}" >/dev/null
  "$BIN/deployctl" --project "$proj" declare env agent ten "${addrs[@]:0:20}" >/dev/null
  "$BIN/deployctl" --project "$proj" declare env agent all "${addrs[@]}" >/dev/null
  local r1 r10 rn f1 f10 fn
  r1=$(fleet_run_ms one "$proj")
  r10=$(fleet_run_ms ten "$proj")
  rn=$(fleet_run_ms all "$proj")
  f1=$(fleet_floor_ms 1)
  f10=$(fleet_floor_ms 10)
  fn=$(fleet_floor_ms "$FLEET_N")
  row "run to 1 agent vs 1 app by hand, ms" "$r1" "$f1" "$(ratio "$r1" "$f1")"
  row "run to 10 agents vs 10 apps by hand, ms" "$r10" "$f10" "$(ratio "$r10" "$f10")"
  row "run to $FLEET_N agents vs $FLEET_N apps by hand (<=1.3x)" "$rn" "$fn" "$(ratio "$rn" "$fn")"
  # Status of a deployment running on every agent of each env; nodes of each env.
  local env port=8150
  for env in one ten all; do
    port=$((port + 1))
    "$BIN/deployctl" --project "$proj" run "st-$env" --env "$env" --repo "$REPO" \
      --command "python3 app.py" --port "$port" --health-path / >/dev/null 2>&1 \
      || echo "fleet: run st-$env failed" >&2
  done
  local s1 s10 sn n1 nn
  s1=$(fleet_cli_ms "$proj" 5 status st-one)
  s10=$(fleet_cli_ms "$proj" 5 status st-ten)
  sn=$(fleet_cli_ms "$proj" 5 status st-all)
  n1=$(fleet_cli_ms "$proj" 5 nodes --env one)
  nn=$(fleet_cli_ms "$proj" 5 nodes --env all)
  row "status across 10 agents vs 1, ms" "$s10" "$s1" "$(ratio "$s10" "$s1")"
  row "status across $FLEET_N agents vs 1, ms (<=200)" "$sn" "$s1" "$(ratio "$sn" "$s1")"
  row "nodes across $FLEET_N agents vs 1, ms (<=300)" "$nn" "$n1" "$(ratio "$nn" "$n1")"
  # A rolling run, 20 agents at a time, and status with one agent frozen (SIGSTOP: the
  # kernel still accepts its connections, nothing answers): it costs at most --timeout.
  local rp t0 stopped
  t0=$(now_us)
  "$BIN/deployctl" --project "$proj" run app-rolling --env all --repo "$REPO" --max-parallel 20 \
    --command "python3 app.py" --port 8170 --health-path / >/dev/null 2>&1 \
    || echo "fleet: run --max-parallel 20 failed" >&2
  rp=$(ms_since "$t0")
  row "run --max-parallel 20 to $FLEET_N agents vs all at once, ms" "$rp" "$rn" "$(ratio "$rp" "$rn")"
  stopped=$last_agent
  kill -STOP "$stopped"
  t0=$(now_us)
  "$BIN/deployctl" --project "$proj" status st-all --timeout 2s >/dev/null 2>&1 || true
  local sf=$(ms_since "$t0")
  kill -CONT "$stopped"
  row "status, $FLEET_N agents, one frozen (--timeout 2s), ms" "$sf" "2000" "$(ratio "$sf" 2000)"
  "$BIN/deployctl" --project "$proj" remove app-rolling --drain 0s >/dev/null 2>&1 || true
  local kr ks kn
  ks=$(fleet_cli_kib "$proj" status st-all)
  kn=$(fleet_cli_kib "$proj" nodes --env all)
  for env in one ten all; do
    "$BIN/deployctl" --project "$proj" remove "st-$env" --drain 0s >/dev/null 2>&1 || true
  done
  kr=$(fleet_cli_kib "$proj" run app-mem --env all --repo "$REPO" --command "python3 app.py" \
    --port 8160 --health-path /)
  NOTES+=("fleet: deployctl peak RSS across $FLEET_N agents: run ${kr} KiB, status ${ks} KiB, nodes ${kn} KiB")
}
