//! `X-Forwarded-For` and `X-Forwarded-Proto` through the node proxy: a client cannot forge
//! them (what it sent is replaced by its own address and `http`), unless it connects from an
//! address in the agent's `trusted_proxies` (a load balancer): then its address is appended
//! to the `X-Forwarded-For` it sent and its `X-Forwarded-Proto` is kept.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// Answers every GET with the JSON of the request's headers (names in lower case).
const HEADERS_PY: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        headers = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        body = json.dumps(headers).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// What the app saw of a GET sent from `from` with `headers`: each header's values.
fn seen_from(from: &str, to: SocketAddr, headers: &str) -> serde_json::Value {
    let mut s = connect_from(from, to).unwrap_or_else(|e| panic!("connecting from {from}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(format!("GET / HTTP/1.0\r\nHost: app\r\n{headers}\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(
        head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"),
        "{answer}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn forwarding_headers_are_the_peers_unless_it_is_a_trusted_proxy() {
    let ip = loopback();
    let (lb, client) = (loopback(), loopback());
    let agent = Agent::start_with(
        &ip,
        &format!("trusted_proxies = [\"10.0.0.0/8\", \"{lb}/32\"]\n"),
        &[],
    );
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", HEADERS_PY);
    repo.commit("headers");
    let url = repo.url();
    project
        .deployctl(&[
            "run",
            "headers",
            "--env",
            ENV,
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--health-path",
            "/",
        ])
        .ok();
    let app: SocketAddr = format!("{ip}:8000").parse().unwrap();
    let forged = "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n";

    // A client: what it sent is replaced, whatever it sent.
    let twice = "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n";
    for sent in [forged, twice, ""] {
        expect_forwarded(&client, app, sent, &client, "http");
    }

    // A trusted proxy: its address is appended, its protocol kept.
    expect_forwarded(&lb, app, forged, &format!("203.0.113.7, {lb}"), "https");
    expect_forwarded(&lb, app, "", &lb, "http");
}

/// What the app saw of a request sent from `from` with the headers `sent`: one
/// `X-Forwarded-For` of `xff` and one `X-Forwarded-Proto` of `proto`.
fn expect_forwarded(from: &str, app: SocketAddr, sent: &str, xff: &str, proto: &str) {
    let seen = seen_from(from, app, sent);
    assert_eq!(
        seen["x-forwarded-for"],
        serde_json::json!([xff]),
        "sent {sent:?}: {seen}"
    );
    assert_eq!(
        seen["x-forwarded-proto"],
        serde_json::json!([proto]),
        "sent {sent:?}: {seen}"
    );
}
