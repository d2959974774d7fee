//! Ready and alive are different questions: an app that stops answering (a hung model
//! server) is unhealthy after `health.unhealthy_after` failed checks, at once out of the
//! node proxy's route while another replica serves every request, the load balancers'
//! endpoint says which instance and then 503 once none is healthy, and it is restarted after
//! `health.restart_after`.

use std::time::{Duration, Instant};

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";

/// Answers `GET /` with its pid and `/health` with 200, until a request to `/hang`: from
/// then on every request (health checks too) waits forever, as a hung model server does.
const HANGS_PY: &str = r#"import json, os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

hung = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hang":
            hung.set()
            print("hanging from now on", flush=True)
            body = b"hanging"
        elif hung.is_set():
            time.sleep(3600)
            return
        elif self.path == "/health":
            body = b"ok"
        else:
            body = json.dumps({"marker": "hangs", "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

const INTERVAL: Duration = Duration::from_secs(1);
const UNHEALTHY_AFTER: u32 = 3;
const RESTART_AFTER: u32 = 15;

/// Each instance's pid, private address, state and message, from `status --output json`.
fn instances(project: &Project) -> Vec<(u64, String, String, String)> {
    project
        .replicas_json("hung")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (
                r["pid"].as_u64().unwrap_or(0),
                s("private_address"),
                s("state"),
                s("message"),
            )
        })
        .collect()
}

/// The deployment's load balancer endpoint: its status code and JSON body.
fn lb(agent: &Agent) -> (u16, Value) {
    let (code, body) =
        http_get(&agent.http_url("/deployments/hung/health")).expect("the endpoint answers");
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Makes the instance at `address` hang.
fn hang(address: &str) {
    let (code, _) = http_get(&format!("http://{address}/hang")).expect("/hang answers");
    assert_eq!(code, 200);
}

#[test]
fn a_hung_replica_leaves_traffic_the_other_serves_every_request_and_it_is_restarted() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", HANGS_PY);
    repo.commit("hangs on request");
    repo.tag("v1");
    project
        .run_app(
            ENV,
            "hung",
            &repo.url(),
            "v1",
            &[
                "--replicas",
                "2",
                "--health-interval",
                "1s",
                "--unhealthy-after",
                &UNHEALTHY_AFTER.to_string(),
                "--restart-after",
                &RESTART_AFTER.to_string(),
                "--restart",
                "always",
            ],
        )
        .ok();
    let before = instances(&project);
    assert!(
        before.len() == 2 && before.iter().all(|i| i.2 == "healthy"),
        "{before:?}"
    );
    let (hung_pid, hung_at) = (before[0].0, before[0].1.clone());
    let other_pid = before[1].0;
    // The app's own pid behind each address (the instance's may be its shell's).
    let app_pid =
        |address: &str| get_json(&format!("http://{address}/")).and_then(|v| v["pid"].as_u64());
    let other_app = app_pid(&before[1].1).expect("the other answers");
    assert_ne!(app_pid(&hung_at), Some(other_app));

    // The first one hangs: unhealthy within interval × unhealthy_after (each check may
    // take 2 s, and a busy machine some more), with the reason.
    let hung_since = Instant::now();
    hang(&hung_at);
    let mut now = Vec::new();
    assert!(
        wait_until(INTERVAL * UNHEALTHY_AFTER + Duration::from_secs(7), || {
            now = instances(&project);
            now[0].2 == "unhealthy"
        }),
        "not unhealthy in time: {now:?}"
    );
    let unhealthy_after = hung_since.elapsed();
    assert!(now[0].3.contains("no answer within 2s"), "{now:?}");
    assert_eq!(now[0].0, hung_pid, "not restarted yet: {now:?}");
    // The load balancers still get 200 (the other serves) and are told which one is not.
    let (code, body) = lb(&agent);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["unhealthy"][0]["instance"], 1, "{body}");
    assert_eq!(body["unhealthy"][0]["address"], hung_at.as_str(), "{body}");
    project
        .deployctl(&["status", "hung"])
        .mentions("unhealthy")
        .mentions("no answer");
    let page = get_json(&agent.http_url("/dashboard.json")).expect("the page's data");
    let on_page = page["deployments"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == "hung"))
        .cloned()
        .unwrap_or_default();
    assert!(
        on_page["message"]
            .as_str()
            .unwrap_or("")
            .contains("no answer"),
        "the agent's page does not say why: {on_page}"
    );

    // A client loop: every request answered, all by the other replica.
    let url = agent.app_url(8000, "/");
    let load = Load::start(&url);
    load.wait_for(30);
    let seen = load.finish();
    assert!(
        seen.failed.is_empty(),
        "requests went to the hung one: {seen:?}"
    );
    let pids: Vec<u64> = (0..10)
        .filter_map(|_| get_json(&url).and_then(|v| v["pid"].as_u64()))
        .collect();
    assert!(
        pids.len() == 10 && pids.iter().all(|p| *p == other_app),
        "{pids:?}"
    );

    // The other hangs too: none is healthy, the endpoint says 503.
    hang(&before[1].1);
    let mut last = (0, Value::Null);
    assert!(
        wait_until(INTERVAL * UNHEALTHY_AFTER + Duration::from_secs(7), || {
            last = lb(&agent);
            last.0 == 503
        }),
        "the endpoint did not say 503: {last:?}"
    );
    assert_eq!(last.1["healthy"], false, "{last:?}");

    // Each is restarted after restart_after failed checks, and serves again.
    let mut after = Vec::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            after = instances(&project);
            after.len() == 2
                && after.iter().all(|i| i.2 == "healthy")
                && after[0].0 != hung_pid
                && after[1].0 != other_pid
        }),
        "not restarted: {after:?}"
    );
    assert!(
        hung_since.elapsed() >= INTERVAL * (RESTART_AFTER - 1),
        "restarted before restart_after ({:?}, unhealthy after {unhealthy_after:?})",
        hung_since.elapsed()
    );
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(
        hung_pid as u32
    )));
    assert_eq!(lb(&agent).0, 200);
    let answered = get_json(&url).and_then(|v| v["pid"].as_u64());
    assert!(
        answered.is_some_and(|p| p != other_app),
        "a restarted process answers: {answered:?}"
    );
}
