# The `proxy` group of scripts/bench.sh (sourced by it: uses its BIN, WORK, PIDS, REPO,
# SECONDS_EACH, start_agent, make_repo, wait_http, ratio, median, row and NOTES): redeploys
# under a client loop (strategy switch vs recreate), the switch step, and a fast backend
# (tests/src/bin/fast_backend, a hyper server) measured direct, through the node proxy and
# through HAProxy (Debian's) in front of the same backend, BENCH_PROXY_ROUNDS (default 3)
# rounds in turn, medians, with the CPU each proxy spends per request (BENCH_PROXY_THREADS:
# the agent's proxy_threads there; default: the agent's); then the faults
# (scripts/lib/bench_proxy_faults.sh).

# Calls $1 in a loop (a new connection each time) until the file $2 exists; prints
# "ok failed".
client_loop() {
  python3 - "$1" "$2" <<'EOF'
import os, sys, urllib.request
url, stop = sys.argv[1], sys.argv[2]
ok = failed = 0
while not os.path.exists(stop):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
            ok, failed = (ok + 1, failed) if r.status == 200 else (ok, failed + 1)
    except Exception:
        failed += 1
print(ok, failed)
EOF
}

# 10 redeploys (a new commit each) of the stdlib app with strategy $1 on a fresh agent on
# $2, under a client loop. Sets FAILED, SERVED and EVENTS (the redeploys' event files).
redeploys_under_load() {
  local strategy="$1" ip="$2" proj="$WORK/project-proxy-$1" repo="$WORK/repo-proxy-$1"
  git clone -q "$REPO" "$repo"
  start_agent "$ip"
  mkdir -p "$proj"
  "$BIN/deployctl" --project "$proj" declare env agent p --address "http://$AGENT_GRPC" >/dev/null
  "$BIN/deployctl" --project "$proj" run app --env p --repo "$repo" --command "python3 app.py" \
    --port 8000 --health-path / --strategy "$strategy" >/dev/null
  client_loop "http://$ip:8000/" "$WORK/stop-$strategy" > "$WORK/client-$strategy.out" &
  local client=$!
  PIDS+=("$client")
  wait_http "http://$ip:8000/"
  local i
  for i in $(seq 1 10); do
    git -C "$repo" -c user.name=bench -c user.email=bench@localhost commit -q --allow-empty -m "r$i"
    "$BIN/deployctl" --project "$proj" run --load app --output json > "$WORK/proxy-$strategy-$i.json"
  done
  touch "$WORK/stop-$strategy"
  wait "$client" || true
  read -r SERVED FAILED < "$WORK/client-$strategy.out"
  EVENTS=("$WORK"/proxy-"$strategy"-*.json)
}

# The median over the event files after $1 of the elapsed_ms of the deploy step(s) $1
# (comma-separated, summed per deploy).
step_ms() {
  python3 - "$@" <<'EOF'
import json, statistics, sys
steps, paths = sys.argv[1].split(","), sys.argv[2:]
per_deploy = []
for path in paths:
    total = 0
    for line in open(path):
        e = json.loads(line)
        if e.get("phase") == "done" and e.get("step") in steps:
            total += e.get("elapsed_ms", 0)
    per_deploy.append(total)
print(round(statistics.median(per_deploy)))
EOF
}

# The latency (us) at percentile $2 of $1 with one connection (wrk -t1 -c1).
wrk_latency_us() {
  wrk -t1 -c1 -d"${SECONDS_EACH}s" --latency "$1" 2>&1 | python3 -c '
import re, sys
want = sys.argv[1] + "%"
units = {"us": 1, "ms": 1000, "s": 1000000}
for line in sys.stdin:
    f = line.split()
    if len(f) == 2 and f[0] == want:
        m = re.match(r"([0-9.]+)(us|ms|s)$", f[1])
        if m:
            print(round(float(m.group(1)) * units[m.group(2)]))' "$2"
}

bench_proxy() {
  make_repo
  redeploys_under_load switch 127.0.0.241
  local switch_failed="$FAILED" switch_served="$SERVED" switch_events=("${EVENTS[@]}")
  redeploys_under_load recreate 127.0.0.242
  row "failed requests, 10 redeploys under load (0)" "$switch_failed" "$FAILED" "-"
  NOTES+=("proxy: requests served during the 10 redeploys: switch $switch_served, recreate $SERVED (the baseline is strategy recreate: stop, then start)")
  local switch_ms outage_ms
  switch_ms=$(step_ms switch "${switch_events[@]}")
  outage_ms=$(step_ms start,health "${EVENTS[@]}")
  row "healthy -> routed to the new release, ms (<=5)" "$switch_ms" "$outage_ms" "$(ratio "$switch_ms" "$outage_ms")"
  NOTES+=("proxy: the baseline of the switch row is recreate's outage (its start + health steps)")

  # A fast backend (hyper) deployed behind the proxy, measured direct, through the proxy and
  # through HAProxy in front of the same backend, in turn.
  local ip=127.0.0.243 proj="$WORK/project-fast" config=()
  if [[ -n "${BENCH_PROXY_THREADS:-}" ]]; then
    echo "proxy_threads = $BENCH_PROXY_THREADS" > "$WORK/proxy-threads.toml"
    config=(DEPLOY_AGENT_CONFIG="$WORK/proxy-threads.toml")
  fi
  start_agent "$ip" "${config[@]}"
  mkdir -p "$proj"
  "$BIN/deployctl" --project "$proj" declare env agent f --address "http://$AGENT_GRPC" >/dev/null
  "$BIN/deployctl" --project "$proj" run fast --env f --repo "$REPO" --command "$BIN/fast_backend" \
    --port 8000 --health-path / >/dev/null
  local private proxy_pid backend haproxy=""
  private=$("$BIN/deployctl" --project "$proj" status fast --output json | python3 -c '
import json, sys
print(json.load(sys.stdin)["deployments"][0]["instances"][0]["private_address"])')
  proxy_pid=$(awk '{print $1}' "$AGENT_DIR/data/proxy/proxy.pid")
  backend=$(listener_pid "$private")
  start_haproxy "$private" && haproxy="$HAPROXY_PID"
  local rounds="${BENCH_PROXY_ROUNDS:-3}" r via=() direct=() hap=() cpu_via=() cpu_hap=() cpu_app=()
  for r in $(seq 1 "$rounds"); do
    wrk_cpu "http://$private/" "$backend"
    direct+=("$RPS"); cpu_app+=("$CPU_US")
    wrk_cpu "http://$ip:8000/" "$proxy_pid"
    via+=("$RPS"); cpu_via+=("$CPU_US")
    if [[ -n "$haproxy" ]]; then
      wrk_cpu "http://$HAPROXY_IP:8000/" "$haproxy"
      hap+=("$RPS"); cpu_hap+=("$CPU_US")
    fi
  done
  local v d h cv ch
  v=$(median "${via[@]}"); d=$(median "${direct[@]}"); cv=$(median "${cpu_via[@]}")
  row "req/s through the proxy (vs direct)" "$v" "$d" "$(ratio "$v" "$d")"
  if [[ -n "$haproxy" ]]; then
    h=$(median "${hap[@]}"); ch=$(median "${cpu_hap[@]}")
    row "req/s through HAProxy (vs direct)" "$h" "$d" "$(ratio "$h" "$d")"
    row "req/s through the proxy (vs HAProxy; >=1.0x)" "$v" "$h" "$(ratio "$v" "$h")"
    row "CPU per request, proxy (vs HAProxy), us" "$cv" "$ch" "$(ratio "$cv" "$ch")"
  else
    row "CPU per request, proxy, us" "$cv" "-" "-"
  fi
  NOTES+=("proxy: req/s, $rounds rounds of direct, proxy, HAProxy in turn (${SECONDS_EACH} s each, wrk -t2 -c32): direct ${direct[*]}; proxy ${via[*]}; HAProxy ${hap[*]:-not run}. The backend's own CPU per request: $(median "${cpu_app[@]}") us")
  local p50v p50d p99v p99d
  p50v=$(wrk_latency_us "http://$ip:8000/" 50); p50d=$(wrk_latency_us "http://$private/" 50)
  p99v=$(wrk_latency_us "http://$ip:8000/" 99); p99d=$(wrk_latency_us "http://$private/" 99)
  row "latency p50 through the proxy (vs direct), us" "$p50v" "$p50d" "$(ratio "$p50v" "$p50d")"
  row "latency p99 through the proxy (vs direct), us" "$p99v" "$p99d" "$(ratio "$p99v" "$p99d")"
  NOTES+=("proxy: added latency p50 $((p50v - p50d)) us (target <= 100), p99 $((p99v - p99d)) us (target <= 500)")
  if [[ -n "$haproxy" ]]; then
    local p50h p99h
    p50h=$(wrk_latency_us "http://$HAPROXY_IP:8000/" 50); p99h=$(wrk_latency_us "http://$HAPROXY_IP:8000/" 99)
    NOTES+=("HAProxy: added latency p50 $((p50h - p50d)) us, p99 $((p99h - p99d)) us")
    kill "$haproxy" 2>/dev/null || true
  fi
  bench_proxy_faults "$ip" fast
}

# HAProxy (Debian's) on $HAPROXY_IP:8000 in front of the backend $1, set up as a proxy in front
# of a deployment would be: keep-alive on both sides, X-Forwarded-For and -Proto set, its
# default threads (one per core), its own session. Sets HAPROXY_PID; without haproxy, a note
# and false.
HAPROXY_IP=127.0.0.244
start_haproxy() {
  if ! ensure_apt_tool haproxy haproxy >&2; then
    NOTES+=("proxy: no HAProxy rows (haproxy could not be installed)")
    return 1
  fi
  local bin cfg="$WORK/haproxy.cfg"
  bin=$(command -v haproxy || echo /usr/sbin/haproxy)
  printf '%s\n' "global" "  maxconn 4096" "defaults" "  mode http" "  option forwardfor" \
    "  timeout connect 2s" "  timeout client 75s" "  timeout server 75s" \
    "  timeout http-request 10s" "frontend front" "  bind $HAPROXY_IP:8000" \
    "  http-request set-header X-Forwarded-Proto http" "  default_backend app" \
    "backend app" "  server app $1" > "$cfg"
  # In a session of its own, as the node proxy runs (and as either runs on a server, a
  # service): the kernel shares the CPU between sessions (autogroups), so a proxy in wrk's
  # session would be scheduled with wrk's and served first on a busy machine.
  setsid "$bin" -db -f "$cfg" > "$WORK/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  PIDS+=("$HAPROXY_PID")
  if ! wait_http "http://$HAPROXY_IP:8000/" 10; then
    NOTES+=("proxy: HAProxy did not start: $(tail -3 "$WORK/haproxy.log")")
    return 1
  fi
  local version
  version=$("$bin" -v 2>/dev/null | awk 'NR == 1 {print $3}')
  NOTES+=("proxy: HAProxy $version, option forwardfor, one thread per core, in a session of its own like the node proxy")
}

# The pid of the process listening on $1 (host:port).
listener_pid() { ss -Htlnp "src $1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }

# wrk -t2 -c32 on $1 for SECONDS_EACH s; sets RPS, and CPU_US: the CPU time (user and system)
# process $2 spent per request meanwhile.
wrk_cpu() {
  local url="$1" pid="$2" t0 t1 out requests
  t0=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c32 -d"${SECONDS_EACH}s" "$url" 2>&1)
  t1=$(cpu_ticks "$pid")
  RPS=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  CPU_US=$(python3 -c '
import sys
ticks, n, hz = int(sys.argv[1]), int(sys.argv[2] or 0), int(sys.argv[3])
print(f"{ticks / hz * 1e6 / n:.1f}" if n else "-")' "$((t1 - t0))" "${requests:-0}" "$(getconf CLK_TCK)")
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
