//! What happened to a deployment last survives an agent restart: the agent's page keeps
//! "restarted: the app exited with code 1" (and says it re-adopted the app); a deploy that
//! failed while the previous release kept serving shows its step and reason on the page
//! (escaped), on the deployment's page and in `deployctl status`, before and after an agent
//! restart.

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";

/// Serves `/health`; its first run ever (no mark in `DATA_DIR`) exits with code 1 half a
/// second after it starts, leaving the mark, so the restart policy starts it once again.
const CRASH_ONCE_PY: &str = r#"import os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK = os.path.join(os.environ["DATA_DIR"], "crashed-once")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def crash_once():
    time.sleep(0.5)
    if not os.path.exists(MARK):
        open(MARK, "w").close()
        print("crashing once", flush=True)
        os._exit(1)


threading.Thread(target=crash_once, daemon=True).start()
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// `/health` answers 500 with markup in its body: never healthy.
const MARKUP_500_PY: &str = r#"import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<b>model</b> not loaded"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The deployment `name` in the agent's `/dashboard.json`.
fn on_page(agent: &Agent, name: &str) -> Value {
    let data = get_json(&agent.http_url("/dashboard.json")).expect("/dashboard.json answers");
    data["deployments"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {data}"))
}

fn page(agent: &Agent) -> String {
    http_get(&agent.http_url("/")).expect("the page answers").1
}

/// Stops the agent (SIGTERM) and starts it again, until it has taken its apps back.
fn restart(agent: &mut Agent) {
    assert!(agent.terminate(), "the agent did not stop cleanly");
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(20), || http_get(
            &agent.http_url("/readyz")
        )
        .is_some_and(|(code, _)| code == 200)),
        "the agent did not take its apps back"
    );
}

#[test]
fn the_last_event_and_a_failed_deploy_survive_an_agent_restart() {
    let mut agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", CRASH_ONCE_PY);
    repo.commit("crashes once");
    repo.tag("v1");
    project
        .run_app(ENV, "once", &repo.url(), "v1", &["--restart", "on-failure"])
        .ok();
    let restarted = "restarted: the app exited with code 1";
    assert!(
        wait_until(Duration::from_secs(20), || {
            let d = on_page(&agent, "once");
            d["state"] == "healthy" && d["restarts"] == 1
        }),
        "it did not crash once and come back: {}",
        on_page(&agent, "once")
    );
    let d = on_page(&agent, "once");
    assert!(
        d["last_event"].as_str().unwrap_or("").contains(restarted),
        "{d}"
    );
    assert!(page(&agent).contains(restarted));

    // The agent restarts and re-adopts the app: the last event is still there.
    restart(&mut agent);
    let d = on_page(&agent, "once");
    assert!(
        d["last_event"].as_str().unwrap_or("").contains(restarted),
        "the last event is lost after an agent restart: {d}"
    );
    assert!(d["adopted_at"].as_i64().unwrap_or(0) > 0, "{d}");
    let html = page(&agent);
    assert!(
        html.contains(restarted) && html.contains("re-adopted after an agent restart"),
        "{html}"
    );

    // A release that never becomes healthy: release 1 keeps serving, and everyone says
    // why release 2 failed.
    repo.write("app.py", MARKUP_500_PY);
    repo.commit("500 with markup");
    repo.tag("v2");
    project
        .run_app(ENV, "once", &repo.url(), "v2", &["--health-timeout", "2s"])
        .expect_code(1);
    let reason = "GET /health returned HTTP 500: <b>model</b> not loaded";
    let escaped = "GET /health returned HTTP 500: &lt;b&gt;model&lt;/b&gt; not loaded";
    for round in ["before", "after"] {
        // A re-adopted app is healthy again at its first check.
        let healthy = wait_until(Duration::from_secs(15), || {
            on_page(&agent, "once")["state"] == "healthy"
        });
        let d = on_page(&agent, "once");
        assert!(healthy, "{round} an agent restart: {d}");
        assert_eq!(d["last_deploy"]["ok"], false, "{d}");
        assert_eq!(d["last_deploy"]["failed_step"], "health", "{d}");
        assert!(
            d["last_deploy"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains(reason),
            "{d}"
        );
        assert_eq!(d["failed_deploy"]["release"], 2, "{d}");
        assert!(
            d["last_event"]
                .as_str()
                .unwrap_or("")
                .contains("deploy of release 2 failed at health"),
            "{round} an agent restart: {d}"
        );
        let html = page(&agent);
        assert!(
            html.contains("✗ health: the health check of") && html.contains(escaped),
            "{html}"
        );
        assert!(!html.contains("<b>model"), "{html}");
        let detail = http_get(&agent.http_url("/deployments/once")).unwrap().1;
        assert!(detail.contains(escaped), "{detail}");

        project
            .deployctl(&["status", "once"])
            .ok()
            .mentions("last deploy: release 2 failed at health: ")
            .mentions(reason)
            .mentions("release 1 kept serving");
        let (_, status) = project.status_json("once");
        let instance = &status["instances"][0];
        assert_eq!(instance["failed_deploy"]["step"], "health", "{status}");
        assert_eq!(instance["failed_deploy"]["release"], 2, "{status}");
        assert!(
            instance["last_event"]
                .as_str()
                .unwrap_or("")
                .contains("deploy of release 2 failed at health"),
            "{status}"
        );
        if round == "before" {
            restart(&mut agent);
        }
    }

    // A deploy that works clears the failure.
    repo.write("app.py", CRASH_ONCE_PY);
    repo.commit("fixed");
    repo.tag("v3");
    project.run_app(ENV, "once", &repo.url(), "v3", &[]).ok();
    let (_, status) = project.status_json("once");
    assert!(
        status["instances"][0]["failed_deploy"].is_null(),
        "{status}"
    );
    assert!(
        status["instances"][0]["last_event"]
            .as_str()
            .unwrap_or("")
            .contains("release 3 deployed"),
        "{status}"
    );
}
