# The proxy group's faults (sourced by scripts/bench.sh: uses its WORK, AGENT_DIR, AGENT_HTTP,
# now_us, ms_since, row and NOTES): the node proxy of the agent just started, with a
# deployment behind it on $1:8000 and a client calling it in a loop, is killed with -9
# (connections refused while nothing listened: the agent keeps its listening sockets, so
# none should be), then frozen with kill -STOP (how long until the deployment's health
# endpoint answers 503 and until the agent has replaced it).

# Calls $1 in a loop (a new connection each time) until the file $2 exists; prints "ok
# refused failed longest_gap_ms".
fault_client() {
  python3 - "$1" "$2" <<'EOF'
import os, socket, sys, time
url, stop = sys.argv[1], sys.argv[2]
host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
ok = refused = failed = 0
gap, last = 0.0, None
while not os.path.exists(stop):
    try:
        s = socket.create_connection((host, int(port)), timeout=10)
    except ConnectionRefusedError:
        refused += 1
        continue
    except OSError:
        failed += 1
        continue
    try:
        s.settimeout(10)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        head = s.recv(64)
        while s.recv(65536):
            pass
        if head.startswith(b"HTTP/1.") and head.split()[1] == b"200":
            ok += 1
            now = time.monotonic()
            if last is not None:
                gap = max(gap, now - last)
            last = now
        else:
            failed += 1
    except (OSError, IndexError):
        failed += 1
    finally:
        s.close()
print(ok, refused, failed, round(gap * 1000))
EOF
}

proxy_pid_of() { awk '{print $1}' "$AGENT_DIR/data/proxy/proxy.pid" 2>/dev/null; }

# Waits (10 s at most) until the proxy's pid file names another live process than $1.
wait_replaced() {
  local old="$1" deadline=$((SECONDS + 10)) new
  while (( SECONDS < deadline )); do
    new=$(proxy_pid_of)
    [[ -n "$new" && "$new" != "$old" && -d "/proc/$new" ]] && ! kill -0 "$old" 2>/dev/null && return 0
    sleep 0.01
  done
  return 1
}

bench_proxy_faults() {
  local ip="$1" name="$2" stop="$WORK/stop-faults" old t0
  fault_client "http://$ip:8000/" "$stop" > "$WORK/client-faults.out" &
  local client=$!
  PIDS+=("$client")
  sleep 1
  old=$(proxy_pid_of)
  kill -9 "$old"
  wait_replaced "$old" || echo "bench: the killed proxy was not replaced" >&2
  sleep 1
  touch "$stop"
  wait "$client" || true
  local ok refused failed gap
  read -r ok refused failed gap < "$WORK/client-faults.out"
  row "refused connections, proxy kill -9 under load (0)" "$refused" "-" "-"
  row "longest wait for an answer across it, ms (<1000)" "$gap" "-" "-"
  NOTES+=("proxy: kill -9 of the node proxy under a client loop: $ok answers, $refused refused, $failed failed (in flight when it died)")

  old=$(proxy_pid_of)
  kill -STOP "$old"
  t0=$(now_us)
  local lb_ms=-
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$AGENT_HTTP/deployments/$name/health")" == 503 ]]; do
    (( $(ms_since "$t0") < 10000 )) || break
    sleep 0.02
  done
  (( $(ms_since "$t0") < 10000 )) && lb_ms=$(ms_since "$t0")
  wait_replaced "$old" || echo "bench: the frozen proxy was not replaced" >&2
  row "frozen proxy (kill -STOP): health 503 after, ms" "$lb_ms" "-" "-"
  row "frozen proxy (kill -STOP): replaced after, ms" "$(ms_since "$t0")" "-" "-"
}
