//! The Python apps the tests deploy (stdlib only, so deploys need no package install).

/// The standard test app (stdlib only). `GET /health` → 200 "ok"; `GET /` → JSON with
/// `marker`, `name`, `release`, `commit`, `pid`; `POST /predict` echoes its JSON input. It prints
/// `app MARKER listening on HOST:PORT release N` once it is bound (flushed).
///
/// Optional behaviour through env vars (`deployctl run --env-var K=V`):
/// `APP_IMPORT=module` imports it and serves `module_version`; `APP_FILE=path` serves the
/// file's content as `file`; `APP_CHILD=1` spawns `sleep 1000` and serves `child_pid`;
/// `APP_HEALTH_FILE=path`: `/health` answers 503 while that file exists (`{PUBLIC_HOST}` in
/// it is replaced by the host of `DEPLOYMENT_URL`, so instances on several agents can
/// differ; `{HOST}` by the app's HOST); `APP_CHATTY=1`
/// prints a 100-byte line every millisecond or so; `APP_SLOW_START=SECONDS` loads its
/// "model" for that long before it listens (a line `Loading checkpoint shards I/N` every
/// 4 s or so).
pub const APP_PY: &str = r#"import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = "__MARKER__"
HOST = os.environ["HOST"]
PORT = int(os.environ["PORT"])

info = {
    "marker": MARKER,
    "name": os.environ.get("DEPLOYMENT_NAME"),
    "release": os.environ.get("DEPLOYMENT_RELEASE"),
    "commit": os.environ.get("GIT_COMMIT"),
    "pid": os.getpid(),
    "uid": os.getuid(),
    "python": sys.executable,
    "host": HOST,
    "url": os.environ.get("DEPLOYMENT_URL"),
}
if os.environ.get("APP_IMPORT"):
    module = __import__(os.environ["APP_IMPORT"])
    info["module_version"] = getattr(module, "__version__", None)
    info["module_file"] = getattr(module, "__file__", None)
if os.environ.get("APP_FILE"):
    with open(os.environ["APP_FILE"]) as f:
        info["file"] = f.read().strip()
if os.environ.get("APP_CHILD"):
    child = subprocess.Popen(["sleep", "1000"])
    info["child_pid"] = child.pid
PUBLIC_HOST = (os.environ.get("DEPLOYMENT_URL") or "").split("//")[-1].rsplit(":", 1)[0]
HEALTH_FILE = os.environ.get("APP_HEALTH_FILE", "").replace("{HOST}", HOST).replace("{PUBLIC_HOST}", PUBLIC_HOST)
if os.environ.get("APP_CHATTY"):
    def chatter():
        n = 0
        while True:
            n += 1
            print(f"chatty line {n:08d} " + "x" * 80, flush=True)
            time.sleep(0.001)

    threading.Thread(target=chatter, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health" and HEALTH_FILE and os.path.exists(HEALTH_FILE):
            status, body, kind = 503, b"made unhealthy by the test", "text/plain"
        elif self.path == "/health":
            status, body, kind = 200, b"ok", "text/plain"
        elif self.path == "/":
            if os.environ.get("APP_DELAY_MS"):
                time.sleep(float(os.environ["APP_DELAY_MS"]) / 1000)
            status, body, kind = 200, json.dumps(info).encode(), "application/json"
        else:
            status, body, kind = 404, b"not found", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"null")
        if self.path == "/predict":
            status = 200
            body = json.dumps({"marker": MARKER, "release": info["release"], "input": data}).encode()
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


if os.environ.get("APP_SLOW_START"):
    seconds = float(os.environ["APP_SLOW_START"])
    shards = max(1, int(seconds // 4))
    for i in range(shards):
        print(f"Loading checkpoint shards {i + 1}/{shards}", flush=True)
        time.sleep(seconds / shards)
server = ThreadingHTTPServer((HOST, PORT), Handler)
print(f"app {MARKER} listening on {HOST}:{PORT} release {info['release']}", flush=True)
server.serve_forever()
"#;

/// [`APP_PY`] with its marker set.
pub fn app_py(marker: &str) -> String {
    APP_PY.replace("__MARKER__", marker)
}

/// An app that binds HOST:PORT and answers, but `/health` always says 503: never healthy.
pub const NEVER_HEALTHY_PY: &str = r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"not ready, and never will be"
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


server = ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
print("broken app listening, /health will say 503", flush=True)
server.serve_forever()
"#;

/// An app that exits at once with code 3.
pub const EXIT_AT_ONCE_PY: &str = r#"import sys
print("broken app: missing configuration, exiting", flush=True)
sys.exit(3)
"#;

/// An app that serves `/health` for `CRASH_AFTER` seconds (default 1), then exits with
/// code 3: a crash loop under a restart policy. Each start prints `crashy start UNIXTIME`.
pub const CRASH_AFTER_PY: &str = r#"import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print(f"crashy start {time.time():.3f}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def crash():
    time.sleep(float(os.environ.get("CRASH_AFTER", "1")))
    print("crashy exits with code 3", flush=True)
    os._exit(3)


threading.Thread(target=crash, daemon=True).start()
server = ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
server.serve_forever()
"#;

/// Serves /health, then grows past any small memory limit.
pub const HOG_PY: &str = r#"import os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
def grow():
    time.sleep(1.5)
    hoard = []
    while True:
        hoard.append(bytearray(16 * 1024 * 1024))
threading.Thread(target=grow, daemon=True).start()
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

/// Serves /health and spins a core in a thread.
pub const SPIN_PY: &str = r#"import os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

/// Serves `/health`; `GET /write?mb=N&rate=R` starts writing N MB of 100-byte lines to its
/// output (its `app.log`), R MB a second (0: as fast as it can), ignoring write errors (a
/// full disk); every GET answers `{"written": BYTES, "errors": N, "done": BOOL}`.
pub const FLOOD_PY: &str = r#"import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
state = {"written": 0, "errors": 0, "done": False}
def flood(total, rate):
    n, start = 0, time.monotonic()
    while state["written"] < total:
        line = "flood line %09d %s\n" % (n, "x" * 78)
        n += 1
        try:
            sys.stdout.write(line)
        except OSError:
            state["errors"] += 1
        state["written"] += len(line)
        if rate and n % 1000 == 0:
            ahead = state["written"] / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    try:
        sys.stdout.write("flood done\n")
        sys.stdout.flush()
    except OSError:
        state["errors"] += 1
    state["done"] = True
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/write":
            q = parse_qs(url.query)
            mb, rate = int(q["mb"][0]), float(q.get("rate", ["0"])[0])
            threading.Thread(target=flood, args=(mb * 1000000, rate * 1000000), daemon=True).start()
        body = json.dumps(state).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;
