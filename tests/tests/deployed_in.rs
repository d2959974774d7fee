//! "deployed in" ends at the switch: a redeploy whose old release still has a slow request
//! in flight answers as soon as the new release takes the traffic; the old release's drain
//! (here ~3 s) is reported after, on its own line, and not counted in the deploy's time.

use std::time::{Duration, Instant};

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// An app whose `GET /slow` takes `SLOW_SECONDS` (3) to answer; it prints
/// `slow request started` when one begins. `/health` answers at once.
const SLOW_PY: &str = r#"import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = "__MARKER__"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            print("slow request started", flush=True)
            time.sleep(float(os.environ.get("SLOW_SECONDS", "3")))
        body = MARKER.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// The milliseconds of "deployed in 450 ms" / "deployed in 1.7 s" in `text`.
fn deployed_in_ms(text: &str) -> Option<f64> {
    let rest = &text[text.find("deployed in ")? + "deployed in ".len()..];
    let mut words = rest.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    match words.next()? {
        "ms" => Some(value),
        "s" => Some(value * 1000.0),
        _ => None,
    }
}

/// The milliseconds of "release 1 drained in 3012 ms" in `text`.
fn drained_in_ms(text: &str) -> Option<f64> {
    let rest = &text[text.find("release 1 drained in ")? + "release 1 drained in ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn deployed_in_ends_at_the_switch_not_after_the_old_release_drained() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", &SLOW_PY.replace("__MARKER__", "one"));
    repo.commit("slow one");
    repo.tag("v1");
    project.run_app(ENV, "slow", &repo.url(), "v1", &[]).ok();
    repo.write("app.py", &SLOW_PY.replace("__MARKER__", "two"));
    repo.commit("slow two");
    repo.tag("v2");

    // A request to release 1 that takes 3 s, in flight when the redeploy switches.
    let url = agent.app_url(8000, "/slow");
    let slow = std::thread::spawn(move || {
        let began = Instant::now();
        (http_get(&url), began.elapsed())
    });
    assert!(
        wait_until(Duration::from_secs(10), || agent
            .app_log("slow")
            .contains("slow request started")),
        "the slow request did not reach the app"
    );
    let out = project.run_app(ENV, "slow", &repo.url(), "v2", &[]);
    out.ok().mentions("new requests go to release 2");
    let text = out.all();
    let deployed = deployed_in_ms(&text).unwrap_or_else(|| panic!("no 'deployed in':\n{out}"));
    let drained = drained_in_ms(&text).unwrap_or_else(|| panic!("no drain line:\n{out}"));
    assert!(
        drained >= 1500.0,
        "release 1 drained too soon for a 3 s request:\n{out}"
    );
    assert!(
        deployed * 2.0 < drained,
        "'deployed in' ({deployed} ms) counts the old release's drain ({drained} ms):\n{out}"
    );
    // The request in flight was answered by release 1, whole.
    let (answer, took) = slow.join().unwrap();
    assert_eq!(answer, Some((200, "one".to_string())), "after {took:?}");
    // status still says how long release 1 drained.
    let (_, status) = project.status_json("slow");
    let drained_ms = status["instances"][0]["previous_drained_ms"]
        .as_u64()
        .unwrap_or(0) as f64;
    assert!(drained_ms >= 1500.0, "{status}");
}
