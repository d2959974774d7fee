# The `artifacts` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS, REPO,
# WARM_ROUNDS, start_agent, make_repo, now_us, ms_since, median, ratio, row, agent_ms and
# NOTES): model files fetched into the node's store. A 1 GiB file served by a local HTTP
# server (python3 -m http.server on loopback):
# - the first download's rate (the agent's artifacts step: transfer, sha256 in the same
#   pass, fsync, into the store) vs curl fetching the same file from the same server into
#   a file (no hash, no fsync); target >= 0.9x;
# - a warm redeploy (a new commit) of a stdlib app that has the 1 GiB artifact, already in
#   the store, vs the same redeploy of the same app without it; target: <= 50 ms more.

ARTIFACT_AGENT_IP=127.0.0.246
ARTIFACT_HTTP_IP=127.0.0.247
ARTIFACT_MIB="${BENCH_ARTIFACT_MIB:-1024}"

# Serves $1 on ARTIFACT_HTTP_IP; sets ARTIFACT_BASE.
start_file_server() {
  local dir="$1" port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("'"$ARTIFACT_HTTP_IP"'", 0)); print(s.getsockname()[1])')
  python3 -m http.server --bind "$ARTIFACT_HTTP_IP" --directory "$dir" "$port" \
    > "$WORK/http-server.log" 2>&1 &
  PIDS+=($!)
  ARTIFACT_BASE="http://$ARTIFACT_HTTP_IP:$port"
  local deadline=$((SECONDS + 20))
  until curl -fs -o /dev/null -r 0-0 "$ARTIFACT_BASE/model.bin"; do
    (( SECONDS < deadline )) || { echo "the file server did not start" >&2; cat "$WORK/http-server.log" >&2; exit 1; }
    sleep 0.05
  done
}

# The artifacts step's elapsed_ms of a deploy, from `run --output json`'s events on stdin.
artifacts_step_ms() {
  python3 -c '
import json, sys
ms = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("step") == "artifacts" and e.get("phase") == "done":
        ms = e.get("elapsed_ms") or 0
print(ms)'
}

# Median agent ms of WARM_ROUNDS redeploys (a new commit each) of deployment $1 from
# project $2, with the extra `run` flags after them.
warm_artifact_ms() {
  local name="$1" proj="$2" times=() round
  shift 2
  for round in $(seq 1 "$WARM_ROUNDS"); do
    echo "$name $round" >> "$REPO/rounds.txt"
    git -C "$REPO" add rounds.txt
    git -C "$REPO" -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost commit -qm "$name $round"
    "$BIN/deployctl" --project "$proj" run "$name" --env a --repo "$REPO" \
      --command "python3 app.py" --health-path / "$@" --output json > "$proj/$name-$round.json"
    times+=("$(agent_ms < "$proj/$name-$round.json")")
  done
  median "${times[@]}"
}

bench_artifacts() {
  make_repo
  local files="$WORK/artifact-files" proj="$WORK/project-artifacts" hash
  mkdir -p "$files" "$proj"
  chmod 755 "$files"
  head -c "$((ARTIFACT_MIB << 20))" /dev/urandom > "$files/model.bin"
  hash=$(sha256sum "$files/model.bin" | cut -d' ' -f1)
  start_file_server "$files"
  local url="$ARTIFACT_BASE/model.bin" bytes=$((ARTIFACT_MIB << 20))
  # curl first, then the agent: the file is in the page cache for both.
  local t0 curl_ms
  t0=$(now_us)
  curl -fs -o "$WORK/curl-model.bin" "$url"
  curl_ms=$(ms_since "$t0")
  rm -f "$WORK/curl-model.bin"
  start_agent "$ARTIFACT_AGENT_IP"
  "$BIN/deployctl" --project "$proj" declare env agent a --address "http://$AGENT_GRPC" >/dev/null
  "$BIN/deployctl" --project "$proj" run with-model --env a --repo "$REPO" \
    --command "python3 app.py" --port 8000 --health-path / \
    --artifact "model.bin=$url#sha256=$hash" --output json > "$proj/first.json"
  local fetch_ms agent_rate curl_rate
  fetch_ms=$(artifacts_step_ms < "$proj/first.json")
  agent_rate=$(( bytes * 1000 / (fetch_ms > 0 ? fetch_ms : 1) >> 20 ))
  curl_rate=$(( bytes * 1000 / (curl_ms > 0 ? curl_ms : 1) >> 20 ))
  row "first download of ${ARTIFACT_MIB} MiB (vs curl; >=0.9x), MiB/s" "$agent_rate" "$curl_rate" "$(ratio "$agent_rate" "$curl_rate")"
  "$BIN/deployctl" --project "$proj" run without-model --env a --repo "$REPO" \
    --command "python3 app.py" --port 8001 --health-path / >/dev/null
  local with without
  with=$(warm_artifact_ms with-model "$proj" --port 8000)
  without=$(warm_artifact_ms without-model "$proj" --port 8001)
  grep -q "model.bin 1 GiB reused\|model.bin .* reused" "$proj/with-model-1.json" \
    || NOTES+=("artifacts: the redeploy did not say the artifact was reused (see $proj/with-model-1.json)")
  row "warm redeploy with a ${ARTIFACT_MIB} MiB artifact (vs without), ms" "$with" "$without" "$(ratio "$with" "$without")"
  row "a stored artifact's cost per redeploy (<=50), ms" "$((with - without))" "0" "-"
  NOTES+=("artifacts: first download = the agent's artifacts step (HTTP GET, sha256 in the same pass, fsync, into the store: ${fetch_ms} ms) vs curl -o FILE (${curl_ms} ms), the same file from the same python3 http.server on loopback")
  NOTES+=("artifacts, redeploy steps with the artifact: $(step_summary "$proj"/with-model-*.json)")
  NOTES+=("artifacts, redeploy steps without: $(step_summary "$proj"/without-model-*.json)")
}
