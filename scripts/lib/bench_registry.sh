# The `registry` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS,
# start_agent, now_us, ms_since, median, ratio, row and NOTES): agents that announce themselves
# in a real etcd (`register`), and a fleet env that finds them there. Rows: how long after
# REGISTRY_N agents are started a fleet env lists them all (baseline: until each printed its
# ready line); `nodes` on the fleet env (one etcd read added) against a typed env of the same
# agents; how soon a killed agent leaves the fleet (baseline: its register_ttl).
# Loopback: etcd on 127.0.0.244, agents on 127.0.0.245 and up.

# How many agents `nodes --env ENV` of project $1 lists (0 when it fails).
registry_listed() {
  "$BIN/deployctl" --project "$1" nodes --env "$2" --output json 2>/dev/null |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["nodes"]))' 2>/dev/null || echo 0
}

# Polls until project $1's env $2 lists $3 agents (60 s at most).
registry_wait_for() {
  local deadline=$((SECONDS + 60))
  until [[ "$(registry_listed "$1" "$2")" == "$3" ]]; do
    (( SECONDS < deadline )) || { echo "fleet env $2 did not list $3 agents" >&2; exit 1; }
    sleep 0.05
  done
}

bench_registry() {
  ensure_apt_tool etcd etcd-server >&2
  local n="${REGISTRY_N:-10}" eip=127.0.0.244 dir="$WORK/registry" ttl_ms=2000
  local proj="$dir/project" uri="etcd://127.0.0.244:2379/bench"
  mkdir -p "$proj"
  etcd --name bench --data-dir "$dir/etcd" \
    --listen-client-urls "http://$eip:2379" --advertise-client-urls "http://$eip:2379" \
    --listen-peer-urls "http://$eip:2380" --initial-advertise-peer-urls "http://$eip:2380" \
    --initial-cluster "bench=http://$eip:2380" > "$dir/etcd.log" 2>&1 &
  PIDS+=($!)
  local deadline=$((SECONDS + 20))
  until curl -s "http://$eip:2379/health" 2>/dev/null | grep -q true; do
    (( SECONDS < deadline )) || { echo "etcd did not start" >&2; cat "$dir/etcd.log" >&2; exit 1; }
    sleep 0.05
  done
  printf 'register = "%s"\nlabels = {zone = "bench"}\nregister_ttl = "%ss"\n' \
    "$uri" $((ttl_ms / 1000)) > "$dir/config.toml"
  "$BIN/deployctl" --project "$proj" declare env fleet f --registry "$uri" --select zone=bench >/dev/null

  local t0 ready found i addresses=() first_pid=""
  t0=$(now_us)
  for i in $(seq 1 "$n"); do
    start_agent "127.0.0.$((244 + i))" DEPLOY_AGENT_CONFIG="$dir/config.toml"
    addresses+=(--address "http://$AGENT_GRPC")
    [[ -n "$first_pid" ]] || first_pid="$AGENT_PID"
  done
  ready=$(ms_since "$t0")
  registry_wait_for "$proj" f "$n"
  found=$(ms_since "$t0")
  row "registry: $n agents started -> all in a fleet env, ms" "$found" "$ready" "$(ratio "$found" "$ready")"

  "$BIN/deployctl" --project "$proj" declare env agent typed "${addresses[@]}" >/dev/null
  local fleet_ms=() typed_ms=() round
  for round in $(seq 1 5); do
    t0=$(now_us)
    "$BIN/deployctl" --project "$proj" nodes --env f >/dev/null
    fleet_ms+=("$(ms_since "$t0")")
    t0=$(now_us)
    "$BIN/deployctl" --project "$proj" nodes --env typed >/dev/null
    typed_ms+=("$(ms_since "$t0")")
  done
  local fm tm
  fm=$(median "${fleet_ms[@]}"); tm=$(median "${typed_ms[@]}")
  row "nodes: fleet env of $n vs the same agents typed, ms" "$fm" "$tm" "$(ratio "$fm" "$tm")"

  kill -9 "$first_pid"
  wait "$first_pid" 2>/dev/null || true
  t0=$(now_us)
  registry_wait_for "$proj" f $((n - 1))
  local gone
  gone=$(ms_since "$t0")
  row "registry: a killed agent gone from the fleet, ms" "$gone" "$ttl_ms" "$(ratio "$gone" "$ttl_ms")"
  NOTES+=("registry: $n agents announcing themselves in one etcd (register_ttl ${ttl_ms} ms); baselines: their ready lines, nodes on a typed env of the same agents, the lease TTL")
}
