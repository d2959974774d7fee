# The `walls` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS, REPO,
# WARM_ROUNDS, start_agent, make_repo, now_us, ms_since, median, ratio, row and NOTES): what a
# deployment's own user, its checkout given to it, its mount namespace and its cgroups add to
# a warm redeploy. The same agent binary runs as root (walls) and as uid 65534 (no walls:
# apps run as the agent's user); each deploys the same repository, a new commit each round.

# A stdlib app in a repository with $2 more small files, owned by uid $3 (git opens only its
# own user's repositories); sets WALLS_REPO.
make_walls_repo() {
  local repo="$WORK/walls-repo-$1-$3" files="$2"
  WALLS_REPO="$repo"
  [[ -d "$repo/.git" ]] && return
  mkdir -p "$repo/data"
  cp "$REPO/app.py" "$repo/app.py"
  python3 -c '
import os, sys
for i in range(int(sys.argv[2])):
    d = os.path.join(sys.argv[1], "d%03d" % (i // 500))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.txt" % i), "w") as f:
        f.write("row %d\n" % i)
' "$repo/data" "$files"
  git -C "$repo" init -q -b main
  git -C "$repo" add .
  git -C "$repo" -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost commit -qm app
  chown -R "$3:$3" "$repo"
}

# Median ms of WARM_ROUNDS redeploys (a new commit each) of WALLS_REPO to the agent at
# AGENT_GRPC from project $1, deployctl run as the command in $2.. (none: as this user). The
# time is the agent's own (its last event's elapsed_ms): what deployctl does on the client
# (its checks of the local Python, the state file) differs between the two users and is not
# what the walls cost.
warm_walls_ms() {
  local proj="$1" times=() round t0
  shift
  "$@" "$BIN/deployctl" --project "$proj" declare env agent w --address "http://$AGENT_GRPC" >/dev/null
  "$@" "$BIN/deployctl" --project "$proj" run app --env w --repo "$WALLS_REPO" \
    --command "python3 app.py" --port 8000 --health-path / >/dev/null
  for round in $(seq 1 "$WARM_ROUNDS"); do
    "$@" sh -c 'echo "$1" >> "$2/rounds.txt" && git -C "$2" add rounds.txt &&
      git -C "$2" -c gc.auto=0 -c user.name=bench -c user.email=bench@localhost commit -qm "$1"' \
      sh "round $round" "$WALLS_REPO"
    "$@" "$BIN/deployctl" --project "$proj" run app --env w --repo "$WALLS_REPO" \
      --command "python3 app.py" --port 8000 --health-path / --output json > "$proj.round-$round.json"
    times+=("$(agent_ms < "$proj.round-$round.json")")
  done
  "$@" "$BIN/deployctl" --project "$proj" remove app --drain 0s >/dev/null
  median "${times[@]}"
}

# The agent's elapsed_ms of a deploy, from `run --output json`'s events on stdin.
agent_ms() {
  python3 -c '
import json, sys
ms = None
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if isinstance(e, dict) and e.get("step") == "deploy" and e.get("elapsed_ms") is not None:
        ms = e["elapsed_ms"]
print(ms if ms is not None else 0)'
}

# Starts the agent as uid 65534 on $1 with data in $2; sets AGENT_GRPC and AGENT_PID.
start_unprivileged_agent() {
  local ip="$1" dir="$2"
  mkdir -p "$dir/data" "$dir/home"
  chown -R 65534:65534 "$dir"
  setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$dir/home" \
    "$BIN/deploy-agent" --listen "$ip:0" --http-listen "$ip:0" --data-dir "$dir/data" \
    --app-host "$ip" > "$dir/out" 2> "$dir/err" &
  PIDS+=($!)
  AGENT_PID=$!
  local deadline=$((SECONDS + 20))
  until grep -q "ready" "$dir/out" 2>/dev/null; do
    (( SECONDS < deadline )) || { echo "the unprivileged agent did not start" >&2; cat "$dir/err" >&2; exit 1; }
    sleep 0.05
  done
  AGENT_GRPC=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' "$dir/out")
}

bench_walls() {
  if [[ "$(id -u)" != 0 ]]; then
    NOTES+=("walls: skipped (the walls need the agent to run as root)")
    return
  fi
  make_repo
  local size files walled plain label proj
  for size in small large; do
    files=0
    label="app alone"
    if [[ "$size" == large ]]; then files=10000; label="10,000-file checkout"; fi
    make_walls_repo "$size" "$files" 0
    start_agent 127.0.0.212
    proj="$WORK/project-walls-root-$size"
    mkdir -p "$proj"
    walled=$(warm_walls_ms "$proj")
    kill "$AGENT_PID" 2>/dev/null || true
    make_walls_repo "$size" "$files" 65534
    start_unprivileged_agent 127.0.0.213 "$WORK/agent-walls-user-$size"
    proj="$WORK/project-walls-user-$size"
    mkdir -p "$proj"
    chown 65534:65534 "$proj"
    plain=$(warm_walls_ms "$proj" setpriv --reuid=65534 --regid=65534 --clear-groups \
      env HOME="$WORK/agent-walls-user-$size/home")
    kill "$AGENT_PID" 2>/dev/null || true
    row "warm redeploy, walls vs none ($label), ms" "$walled" "$plain" "$(ratio "$walled" "$plain")"
    row "walls' cost per warm redeploy ($label; <=20), ms" "$((walled - plain))" "0" "-"
    NOTES+=("walls, $label, steps behind walls: $(step_summary "$WORK/project-walls-root-$size".round-*.json)")
    NOTES+=("walls, $label, steps with none: $(step_summary "$WORK/project-walls-user-$size".round-*.json)")
  done
  NOTES+=("walls: most of what the walls add is the start step: a child that must do anything before exec (join its cgroups, as root agents did before the walls too; enter its namespace; change user) is forked, not posix_spawn-ed; the namespace and /proc mount themselves take ~2 ms")
  NOTES+=("walls: the same agent as root (each deployment its own user, its checkout chowned, a mount namespace, cgroups) vs as uid 65534 (apps run as it: no walls); medians of $WARM_ROUNDS warm redeploys each")
}
