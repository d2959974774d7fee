//! The Python apps the tests deploy (stdlib only, so deploys need no package install).

/// The standard test app (stdlib only). `GET /health` → 200 "ok"; `GET /` → JSON with
/// `marker`, `name`, `release`, `commit`, `pid`; `POST /predict` echoes its JSON input. It prints
/// `app MARKER listening on HOST:PORT release N` once it is bound (flushed).
///
/// Optional behaviour through env vars (`deployctl run --env-var K=V`):
/// `APP_IMPORT=module` imports it and serves `module_version`; `APP_FILE=path` serves the
/// file's content as `file`; `APP_CHILD=1` spawns `sleep 1000` and serves `child_pid`.
pub const APP_PY: &str = r#"import json
import os
import subprocess
import sys
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
    "python": sys.executable,
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


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            status, body, kind = 200, b"ok", "text/plain"
        elif self.path == "/":
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
