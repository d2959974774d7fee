#!/usr/bin/env bash
# A tour of deployctl on this machine: builds the workspace, makes a temporary git repository
# from examples/iris-api tagged v1.0.0, and deploys it with the built-in `local` env (which
# starts a deploy-agent in the background), then shows status, a prediction, the logs, and
# removes it. The auto-started agent uses a temporary data directory and is stopped at the end.
#
# Environment:
#   DEPLOYCTL_LOCAL_ADDRESS   the local agent's address (default 127.0.0.1:7070)
#   DEMO_PORT                 the app's port (default 8000)
#   DEMO_SKIP_BUILD=1         do not build: use the binaries in DEMO_BIN as they are
#   DEMO_BIN                  where deployctl and deploy-agent are (default target/release,
#                             what `cargo build --release` in the README's Install makes)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==== %s ====\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

export DEPLOYCTL_LOCAL_ADDRESS="${DEPLOYCTL_LOCAL_ADDRESS:-127.0.0.1:7070}"
PORT="${DEMO_PORT:-8000}"
HOSTPART="${DEPLOYCTL_LOCAL_ADDRESS#http://}"
HOST="${HOSTPART%:*}"
AGENT_PORT="${HOSTPART##*:}"

port_in_use() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
}

BIN="${DEMO_BIN:-$ROOT/target/release}"
step "build"
if [[ "${DEMO_SKIP_BUILD:-}" != 1 ]]; then
  show cargo build --release
fi
for b in deployctl deploy-agent; do
  [[ -x "$BIN/$b" ]] || { echo "error: $BIN/$b missing: run cargo build --release" >&2; exit 1; }
done
export PATH="$BIN:$PATH"

if port_in_use "$HOST" "$AGENT_PORT"; then
  echo "error: something already listens on $HOST:$AGENT_PORT; this demo starts its own agent there." >&2
  echo "       Choose another address, e.g. DEPLOYCTL_LOCAL_ADDRESS=127.0.0.1:7170 $0" >&2
  exit 1
fi
if port_in_use "$HOST" "$PORT"; then
  echo "error: port $PORT on $HOST is taken; choose another with DEMO_PORT=8100 $0" >&2
  exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/deployctl-demo.XXXXXX")"
# As root the agent runs each app as its own user, who must pass through to its release.
chmod 711 "$WORK"
export DEPLOYCTL_LOCAL_DATA_DIR="$WORK/agent-data"
REPO="$WORK/iris-api"
PROJECT="$WORK/project"
mkdir -p "$PROJECT"

# The agent and its node proxy (`deploy-agent proxy --control DATA/proxy/...`).
agent_pids() {
  pgrep -f -- "deploy-agent .*$DEPLOYCTL_LOCAL_DATA_DIR" || true
}

cleanup() {
  local rc=$?
  set +e
  if [[ -f "$PROJECT/iris.deploy.yaml" ]] && [[ -n "$(agent_pids)" ]]; then
    deployctl --project "$PROJECT" remove iris >/dev/null 2>&1
  fi
  local pids
  pids="$(agent_pids)"
  if [[ -n "$pids" ]]; then
    step "stop the auto-started agent and its node proxy (pids $(echo $pids))"
    kill -TERM $pids 2>/dev/null
    for _ in $(seq 1 100); do
      [[ -z "$(agent_pids)" ]] && break
      sleep 0.1
    done
    pids="$(agent_pids)"
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

step "a git repository with examples/iris-api, tagged v1.0.0"
mkdir -p "$REPO"
cp -R examples/iris-api/. "$REPO/"
(
  cd "$REPO"
  export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@example.invalid
  export GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@example.invalid
  git init -q -b main
  git add -A
  git commit -q -m "iris-api"
  git tag -a v1.0.0 -m v1.0.0
  git log --oneline --decorate
)

cd "$PROJECT"
step "deploy: deployctl run iris (env local: the agent at $DEPLOYCTL_LOCAL_ADDRESS starts on demand)"
show deployctl run iris --repo "$REPO" --ref v1.0.0 \
  --command "python app.py" --requirements requirements.txt \
  --start-script scripts/fetch-model.sh --health-path /health --port "$PORT"

step "the declaration it wrote: iris.deploy.yaml"
cat iris.deploy.yaml

step "status"
show deployctl status iris

step "predict: POST http://$HOST:$PORT/predict"
python3 - "http://$HOST:$PORT/predict" <<'PY'
import json, sys, urllib.request
body = {"instances": [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.7, 3.0, 5.2, 2.3]]}
print("request: ", json.dumps(body))
req = urllib.request.Request(sys.argv[1], data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    reply = json.load(r)
print("response:", json.dumps(reply, indent=2))
assert [p["class"] for p in reply["predictions"]] == ["setosa", "versicolor", "virginica"], reply
PY

step "logs"
show deployctl logs iris -n 20

step "remove"
show deployctl remove iris

step "done"
echo "The demo deployed, queried and removed iris; the agent is stopped next."
