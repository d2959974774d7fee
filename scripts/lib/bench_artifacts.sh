# The `artifacts` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS, REPO,
# ROUNDS, start_agent, make_repo, now_us, ms_since, median, ratio, row, agent_ms and
# NOTES): model files fetched into the node's store. A 1 GiB file served on loopback by two
# servers in turn: one that sends it with sendfile(2), as nginx or S3 do
# (scripts/lib/file_server.py), and python3 -m http.server, which copies every byte through
# Python and so takes one of a 2-core machine's cores from the client:
# - the first download's rate (the agent's artifacts step: transfer, sha256 in the same
#   pass, fsync, into the store) vs curl fetching the same file from the same server into
#   a file (no hash, no fsync), for each server; target >= 0.9x;
# - a warm redeploy (a new commit) of a stdlib app that has the 1 GiB artifact, already in
#   the store, vs the same redeploy of the same app without it, in turns (medians of
#   BENCH_ARTIFACT_REDEPLOYS, default 11); target: <= 50 ms more.

ARTIFACT_AGENT_IP=127.0.0.246
ARTIFACT_HTTP_IP=127.0.0.247
ARTIFACT_MIB="${BENCH_ARTIFACT_MIB:-1024}"
# Redeploys of each kind (in turns): a redeploy is ~0.3 s, and 50 ms is within one's noise.
ARTIFACT_REDEPLOYS="${BENCH_ARTIFACT_REDEPLOYS:-11}"

# Serves $1 on ARTIFACT_HTTP_IP with server $2 (sendfile | python); sets ARTIFACT_BASE.
start_file_server() {
  local dir="$1" kind="$2" port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("'"$ARTIFACT_HTTP_IP"'", 0)); print(s.getsockname()[1])')
  if [[ "$kind" == sendfile ]]; then
    python3 scripts/lib/file_server.py "$ARTIFACT_HTTP_IP" "$port" "$dir" \
      > "$WORK/http-server.log" 2>&1 &
  else
    python3 -m http.server --bind "$ARTIFACT_HTTP_IP" --directory "$dir" "$port" \
      > "$WORK/http-server.log" 2>&1 &
  fi
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

# The agent's own work in a deploy: its elapsed_ms less its health step's (the app's own
# start, the noisiest part, and the same with or without an artifact the app never reads),
# from `run --output json`'s events on stdin.
agent_work_ms() {
  python3 -c '
import json, sys
total = health = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("phase") == "done":
        if e.get("step") == "deploy":
            total = e.get("elapsed_ms") or 0
        elif e.get("step") == "health":
            health = e.get("elapsed_ms") or 0
print(total - health)'
}

# One redeploy (a new commit) of deployment $1 from project $2 (round $3, the extra `run`
# flags after them): "TOTAL WORK", the agent's ms in all and less the app's start.
redeploy_ms() {
  local name="$1" proj="$2" round="$3"
  shift 3
  echo "$name $round" >> "$REPO/rounds.txt"
  git -C "$REPO" add rounds.txt
  git -C "$REPO" -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost commit -qm "$name $round"
  "$BIN/deployctl" --project "$proj" run "$name" --env a --repo "$REPO" \
    --command "python3 app.py" --health-path / "$@" --output json > "$proj/$name-$round.json"
  echo "$(agent_ms < "$proj/$name-$round.json") $(agent_work_ms < "$proj/$name-$round.json")"
}

# The first download of ARTIFACT_URL (ARTIFACT_HASH) by a fresh agent: sets FETCH_MS, the
# agent's ms for its artifacts step. Its data directory is deleted after. (Not run in a
# subshell: the agent's pid is recorded for the cleanup.)
first_download_ms() {
  local round="$1" proj="$WORK/project-download-$round"
  mkdir -p "$proj"
  start_agent "$ARTIFACT_AGENT_IP"
  "$BIN/deployctl" --project "$proj" declare env agent a --address "http://$AGENT_GRPC" >/dev/null
  "$BIN/deployctl" --project "$proj" run with-model --env a --repo "$REPO" \
    --command "python3 app.py" --port 8000 --health-path / \
    --artifact "model.bin=$ARTIFACT_URL#sha256=$ARTIFACT_HASH" --output json > "$proj/first.json"
  FETCH_MS=$(artifacts_step_ms < "$proj/first.json")
  "$BIN/deployctl" --project "$proj" remove with-model --drain 0s >/dev/null
  kill "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  rm -rf "$AGENT_DIR"
}

# Rounds of curl then a fresh agent (each writing to the same disk) fetching the file in $1
# from server $2: the first-download row of that server.
first_downloads() {
  local files="$1" kind="$2" bytes=$((ARTIFACT_MIB << 20)) round t0 curls=() fetches=()
  start_file_server "$files" "$kind"
  ARTIFACT_URL="$ARTIFACT_BASE/model.bin"
  for round in $(seq 1 "$ROUNDS"); do
    t0=$(now_us)
    curl -fs -o "$WORK/curl-model.bin" "$ARTIFACT_URL"
    curls+=("$(ms_since "$t0")")
    rm -f "$WORK/curl-model.bin"
    first_download_ms "$kind-$round"
    fetches+=("$FETCH_MS")
  done
  local curl_ms fetch_ms agent_rate curl_rate
  curl_ms=$(median "${curls[@]}"); fetch_ms=$(median "${fetches[@]}")
  agent_rate=$(( bytes * 1000 / (fetch_ms > 0 ? fetch_ms : 1) >> 20 ))
  curl_rate=$(( bytes * 1000 / (curl_ms > 0 ? curl_ms : 1) >> 20 ))
  row "first download, $kind server (vs curl; >=0.9x), MiB/s" "$agent_rate" "$curl_rate" "$(ratio "$agent_rate" "$curl_rate")"
  NOTES+=("artifacts: first download from the $kind server = the agent's artifacts step of a fresh agent (HTTP GET, sha256 in the same pass, fsync, into the store; ms: ${fetches[*]}) vs curl -o FILE (ms: ${curls[*]}); medians of $ROUNDS rounds, curl and agent in turns")
}

bench_artifacts() {
  make_repo
  local files="$WORK/artifact-files" proj="$WORK/project-artifacts"
  mkdir -p "$files" "$proj"
  chmod 755 "$files"
  head -c "$((ARTIFACT_MIB << 20))" /dev/urandom > "$files/model.bin"
  ARTIFACT_HASH=$(sha256sum "$files/model.bin" | cut -d' ' -f1)
  local kind
  for kind in sendfile python; do
    first_downloads "$files" "$kind"
  done
  start_file_server "$files" sendfile
  ARTIFACT_URL="$ARTIFACT_BASE/model.bin"

  # The redeploys: the same app with the artifact (in the store) and without, in turns.
  start_agent "$ARTIFACT_AGENT_IP"
  "$BIN/deployctl" --project "$proj" declare env agent a --address "http://$AGENT_GRPC" >/dev/null
  "$BIN/deployctl" --project "$proj" run with-model --env a --repo "$REPO" \
    --command "python3 app.py" --port 8000 --health-path / \
    --artifact "model.bin=$ARTIFACT_URL#sha256=$ARTIFACT_HASH" >/dev/null
  "$BIN/deployctl" --project "$proj" run without-model --env a --repo "$REPO" \
    --command "python3 app.py" --port 8001 --health-path / >/dev/null
  local with=() without=() with_work=() without_work=() t
  for round in $(seq 1 "$ARTIFACT_REDEPLOYS"); do
    t=$(redeploy_ms with-model "$proj" "$round" --port 8000)
    with+=("${t% *}"); with_work+=("${t#* }")
    t=$(redeploy_ms without-model "$proj" "$round" --port 8001)
    without+=("${t% *}"); without_work+=("${t#* }")
  done
  grep -q "model.bin .* reused" "$proj/with-model-1.json" \
    || NOTES+=("artifacts: the redeploy did not say the artifact was reused (see $proj/with-model-1.json)")
  local w n ww nw
  w=$(median "${with[@]}"); n=$(median "${without[@]}")
  ww=$(median "${with_work[@]}"); nw=$(median "${without_work[@]}")
  row "warm redeploy with a ${ARTIFACT_MIB} MiB artifact (vs without), ms" "$w" "$n" "$(ratio "$w" "$n")"
  row "  the agent's part (less the app's start), ms" "$ww" "$nw" "$(ratio "$ww" "$nw")"
  row "a stored artifact's cost per redeploy (<=50), ms" "$((ww - nw))" "0" "-"
  NOTES+=("artifacts: redeploys with (ms: ${with[*]}) and without (ms: ${without[*]}) the artifact, in turns; the agent's part (its elapsed less the health step: the app's own start, which the artifact does not change) with (ms: ${with_work[*]}) and without (ms: ${without_work[*]}); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)")
  NOTES+=("artifacts, redeploy steps with the artifact: $(step_summary "$proj"/with-model-*.json)")
  NOTES+=("artifacts, redeploy steps without: $(step_summary "$proj"/without-model-*.json)")
}
