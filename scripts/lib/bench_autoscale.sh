# The `autoscale` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS,
# start_agent, commit_repo, ratio and row): replicas that follow the load. An app that serves one
# request at a time in 200 ms (a model on one core; its /health answers at once), under a
# step load of 1 client for AUTOSCALE_WARM_S (default 5) then 8 clients for AUTOSCALE_STEP_S
# (default 30), each client calling in a loop:
# - the p50 and p99 latency over the 8 clients' phase with `replicas: {min: 1, max: 4,
#   target_in_flight: 2, scale_up_after: 3s}` vs a fixed single replica (the same app,
#   the same agent, one after the other);
# - the p99 of the requests sent once 4 replicas ran vs the fixed replica's over the step;
# - the time from the step to 4 replicas running (`status --output json` polled every
#   200 ms) vs the declared scale_up_after (3 s): the rest is the new replicas' start and
#   health check.

AUTOSCALE_IP=127.0.0.225
AUTOSCALE_WARM_S="${AUTOSCALE_WARM_S:-5}"
AUTOSCALE_STEP_S="${AUTOSCALE_STEP_S:-30}"

# A git repository with the one-at-a-time app; sets AUTOSCALE_REPO.
make_serial_repo() {
  local repo="$WORK/serial-repo"
  AUTOSCALE_REPO="$repo"
  mkdir -p "$repo"
  cat > "$repo/app.py" <<'EOF'
import os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
MODEL = threading.Lock()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            with MODEL:
                time.sleep(0.2)
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
EOF
  commit_repo "$repo"
}

# The step load on $1 (URL) while `deployctl status $3` (project $2) is polled: prints
# "P50_MS P99_MS TO_4_MS P99_AFTER_MS" (TO_4_MS: -1 when 4 replicas never ran; P99_AFTER_MS:
# the p99 of the requests sent once 4 ran, or of the whole step when they never did).
step_load() {
  python3 - "$1" "$2" "$3" "$BIN/deployctl" "$AUTOSCALE_WARM_S" "$AUTOSCALE_STEP_S" <<'EOF'
import json, subprocess, sys, threading, time, urllib.request
url, project, name, deployctl = sys.argv[1:5]
warm, step = float(sys.argv[5]), float(sys.argv[6])
lat, failed, stop = [], [0], threading.Event()
lock = threading.Lock()
t0 = time.monotonic()
step_at = t0 + warm
end = step_at + step

def client():
    while not stop.is_set():
        began = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                r.read()
            ok = r.status == 200
        except Exception:
            ok = False
        with lock:
            if not ok:
                failed[0] += 1
            elif began >= step_at:
                lat.append((began, time.monotonic() - began))

threads = [threading.Thread(target=client)]
threads[0].start()
time.sleep(max(0.0, step_at - time.monotonic()))
for _ in range(7):
    t = threading.Thread(target=client)
    t.start()
    threads.append(t)
to_four = -1
while time.monotonic() < end:
    if to_four < 0:
        out = subprocess.run([deployctl, "--project", project, "status", name, "--output", "json"],
                             capture_output=True, text=True).stdout
        try:
            i = json.loads(out)["deployments"][0]["instances"][0]
            if i.get("running_replicas", 0) >= 4:
                to_four = round((time.monotonic() - step_at) * 1000)
        except (ValueError, KeyError, IndexError):
            pass
    time.sleep(0.2)
stop.set()
for t in threads:
    t.join()
def pick(values, q):
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000) if values else -1
# Once 4 replicas ran (the whole step for a fixed replica, which never gets there).
settled = to_four / 1000 if to_four >= 0 else 0.0
after = [l for b, l in lat if b - step_at >= settled]
all_lat = [l for _, l in lat]
if failed[0]:
    print(f"{failed[0]} requests failed", file=sys.stderr)
print(pick(all_lat, 0.5), pick(all_lat, 0.99), to_four, pick(after, 0.99))
EOF
}

bench_autoscale() {
  make_serial_repo
  local proj="$WORK/project-autoscale"
  mkdir -p "$proj"
  start_agent "$AUTOSCALE_IP"
  "$BIN/deployctl" --project "$proj" declare env agent a --address "http://$AGENT_GRPC" >/dev/null
  local common=(--env a --repo "$AUTOSCALE_REPO" --command "python3 app.py" --health-path /health
    --health-interval 1s)
  "$BIN/deployctl" --project "$proj" run fixed "${common[@]}" --port 8001 >/dev/null
  "$BIN/deployctl" --project "$proj" run auto "${common[@]}" --port 8002 \
    --replicas 1..4 --target-in-flight 2 >/dev/null
  # The window the bench declares (no flag for it): 3 s above the target.
  python3 - "$proj/auto.deploy.yaml" <<'EOF'
import sys
p = sys.argv[1]
text = open(p).read().replace("  target_in_flight: 2\n", "  target_in_flight: 2\n  scale_up_after: 3s\n")
open(p, "w").write(text)
EOF
  "$BIN/deployctl" --project "$proj" run auto >/dev/null
  local fixed auto
  read -r -a fixed <<< "$(step_load "http://$AUTOSCALE_IP:8001/" "$proj" fixed)"
  read -r -a auto <<< "$(step_load "http://$AUTOSCALE_IP:8002/" "$proj" auto)"
  row "step 1->8 clients p99, autoscaled 1..4 (vs 1), ms" "${auto[1]}" "${fixed[1]}" "$(ratio "${auto[1]}" "${fixed[1]}")"
  row "step 1->8 clients p50, autoscaled 1..4 (vs 1), ms" "${auto[0]}" "${fixed[0]}" "$(ratio "${auto[0]}" "${fixed[0]}")"
  row "step 1->8 clients p99 once at 4 (vs 1), ms" "${auto[3]}" "${fixed[3]}" "$(ratio "${auto[3]}" "${fixed[3]}")"
  row "step 1->8 clients: to 4 replicas (vs window), ms" "${auto[2]}" "3000" "$(ratio "${auto[2]}" 3000)"
}
