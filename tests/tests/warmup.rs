//! `warmup`: requests sent to each instance of a new release once it is ready and before
//! traffic moves to it. The app sees them before the first user request; a warm-up that
//! gets an error fails the deploy and the previous release keeps serving.

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";

/// Keeps every request but health checks in order; `GET /seen` lists them (the user's
/// own `GET /seen` last). `POST /predict` answers 500 when `PREDICT_FAILS` is set.
const WARMED_PY: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen = []
FAILS = bool(os.environ.get("PREDICT_FAILS"))
MARKER = os.environ.get("MARKER", "")


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            return self.answer(200, b"{}")
        seen.append({"method": "GET", "path": self.path})
        self.answer(200, json.dumps({"marker": MARKER, "seen": seen}).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        seen.append({"method": "POST", "path": self.path, "body": body,
                     "type": self.headers.get("Content-Type")})
        if FAILS:
            return self.answer(500, b'{"error": "model not loaded"}')
        self.answer(200, b'{"prediction": 0}')

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

const WARMUP: &str = r#"POST /predict {"rows": [[5.1, 3.5, 1.4, 0.2]]}"#;

#[test]
fn the_app_sees_its_warm_up_before_the_first_user_request_and_a_failed_one_keeps_the_old_release() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", WARMED_PY);
    repo.commit("keeps what it sees");
    repo.tag("v1");
    project
        .run_app(
            ENV,
            "warm",
            &repo.url(),
            "v1",
            &["--warmup", WARMUP, "--env-var", "MARKER=one"],
        )
        .ok()
        .mentions("warmup")
        .mentions("HTTP 200");
    let declared = project.read("warm.deploy.yaml");
    assert!(declared.contains("warmup:"), "{declared}");

    let seen: Value = get_json(&agent.app_url(8000, "/seen")).expect("it serves");
    let seen = seen["seen"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        seen.len(),
        2,
        "the warm-up, then the user's request: {seen:?}"
    );
    assert_eq!(seen[0]["method"], "POST", "{seen:?}");
    assert_eq!(seen[0]["path"], "/predict", "{seen:?}");
    assert_eq!(
        seen[0]["body"], r#"{"rows": [[5.1, 3.5, 1.4, 0.2]]}"#,
        "{seen:?}"
    );
    assert_eq!(seen[0]["type"], "application/json", "{seen:?}");
    assert_eq!(seen[1]["path"], "/seen", "{seen:?}");

    // Release 2's warm-up gets a 500: the deploy fails at warmup, release 1 serves on.
    project
        .run_app(
            ENV,
            "warm",
            &repo.url(),
            "v1",
            &["--env-var", "PREDICT_FAILS=1", "--env-var", "MARKER=two"],
        )
        .expect_code(1)
        .mentions("warmup")
        .mentions("HTTP 500")
        .mentions("model not loaded");
    let now = get_json(&agent.app_url(8000, "/")).expect("release 1 still serves");
    assert_eq!(now["marker"], "one", "{now}");
    let status = project
        .deployctl(&["status", "warm", "--output", "json"])
        .json();
    assert_eq!(
        status["deployments"][0]["instances"][0]["release"], 1,
        "{status}"
    );
}
