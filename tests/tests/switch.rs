//! Zero-downtime releases: a node proxy holds each deployment's port, a new release starts
//! beside the old one on a private port, traffic switches once it is healthy, the old one
//! drains. Checked with a client that calls the app in a loop the whole time.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn a_redeploy_of_a_slow_starting_app_under_load_fails_no_request() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    project
        .run_app(
            ENV,
            "model",
            &repo.url(),
            "v1",
            &["--env-var", "APP_SLOW_START=2"],
        )
        .ok();
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(20);

    repo.commit_app("two", Some("v2"));
    let out = project.run_app(ENV, "model", &repo.url(), "v2", &[]);
    out.ok()
        .mentions("switch")
        .mentions("new requests go to release 2")
        .mentions("release 1 drained in");
    load.wait_for(20);
    // A release that never becomes healthy: the old one never stops serving.
    repo.write("app.py", NEVER_HEALTHY_PY);
    repo.commit("never healthy");
    repo.tag("v3");
    project
        .run_app(ENV, "model", &repo.url(), "v3", &["--health-timeout", "3s"])
        .expect_code(1)
        .mentions("release 2");
    load.wait_for(20);
    // status says where the app listens, when traffic switched, how long release 1
    // drained, and how busy it is (the agent samples the proxy every 2 s).
    let mut instance = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let status = project.deployctl(&["status", "model", "--output", "json"]);
            instance = status.ok().json()["deployments"][0]["instances"][0].clone();
            instance["traffic"]["requests_per_second"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        }),
        "no traffic in status: {instance}"
    );
    assert_eq!(instance["release"], 2, "{instance}");
    let private = instance["private_address"].as_str().unwrap_or_default();
    assert!(
        private.starts_with(&format!("{}:", agent.ip)) && !private.ends_with(":8000"),
        "{instance}"
    );
    assert!(
        instance["switched_at"].as_i64().unwrap_or(0) > 0,
        "{instance}"
    );
    assert!(
        instance["previous_drained_ms"].as_u64().is_some(),
        "{instance}"
    );
    assert!(
        instance["traffic"]["p99_ms"].as_f64().unwrap_or(0.0) > 0.0,
        "{instance}"
    );
    assert_eq!(instance["traffic"]["error_rate"], 0.0, "{instance}");
    project
        .deployctl(&["status", "model"])
        .ok()
        .mentions(private)
        .mentions("traffic switched to release 2")
        .mentions("drained in")
        .mentions("requests/s");
    let seen = load.finish();
    assert!(seen.failed.is_empty(), "failed requests: {seen:?}");
    assert_eq!(seen.markers, ["one", "two"], "{seen:?}");
}

#[test]
fn requests_are_held_while_a_crashed_app_restarts_and_survive_an_agent_kill() {
    let mut agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("steady", Some("v1"));
    project
        .run_app(ENV, "api", &repo.url(), "v1", &["--restart", "always"])
        .ok();
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(20);

    // The app dies: the restart policy starts it again (after a 1 s backoff) on the same
    // private port; the proxy holds requests meanwhile. (A request the app was answering
    // at the instant of its SIGKILL dies with it: one at most, never those that come after.)
    let pid = agent.app_pids()[0];
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        wait_until(Duration::from_secs(15), || agent
            .app_pids()
            .first()
            .is_some_and(|p| *p != pid)),
        "restarted"
    );
    load.wait_for(20);
    let crash = load.finish();
    assert!(
        crash.failed.len() <= 1,
        "requests failed besides the one in flight: {crash:?}"
    );

    // The agent dies: the proxy and the app keep serving; a new agent adopts both. Not one
    // request fails.
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(20);
    agent.kill9();
    load.wait_for(50);
    agent.restart();
    load.wait_for(20);
    let seen = load.finish();
    assert!(seen.failed.is_empty(), "failed requests: {seen:?}");
}

/// An app with a hard-coded address (here from APP_BIND, as `app.run(port=8000)` would).
const HARD_CODED_PY: &str = r#"import os
from http.server import BaseHTTPRequestHandler, HTTPServer

host, port = os.environ["APP_BIND"].rsplit(":", 1)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


print(f"listening on {host}:{port}", flush=True)
HTTPServer((host, int(port)), Handler).serve_forever()
"#;

#[test]
fn an_app_that_binds_the_public_port_itself_is_told_both_fixes() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", HARD_CODED_PY);
    repo.commit("hard-coded port");
    let bind = format!("APP_BIND={ip}:8000");
    let run = |extra: &[&str]| {
        let url = repo.url();
        let mut args = vec![
            "run",
            "fixed",
            "--env",
            ENV,
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--env-var",
            &bind,
            "--health-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        project.deployctl(&args)
    };
    run(&[])
        .expect_code(1)
        .mentions("binds port 8000 itself")
        .mentions("$HOST:$PORT")
        .mentions("strategy: recreate");
    run(&["--strategy", "recreate"]).ok();
    assert_eq!(
        http_get(&agent.app_url(8000, "/")).map(|(s, _)| s),
        Some(200),
        "recreate: the app serves on its own port"
    );
}

#[test]
fn a_deployment_moves_off_the_proxy_and_back_and_a_failed_move_keeps_it_served() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let url = agent.app_url(8000, "/");
    let marker = || get_json(&url).and_then(|v| v["marker"].as_str().map(str::to_string));
    repo.commit_app("one", Some("v1"));
    project
        .run_app(ENV, "web", &repo.url(), "v1", &["--replicas", "2"])
        .ok();
    assert_eq!(marker().as_deref(), Some("one"));

    // A release that fails under strategy recreate: the proxy serves release 1 again.
    repo.write("app.py", NEVER_HEALTHY_PY);
    repo.commit("never healthy");
    repo.tag("bad");
    project
        .run_app(
            ENV,
            "web",
            &repo.url(),
            "bad",
            &[
                "--strategy",
                "recreate",
                "--replicas",
                "1",
                "--health-timeout",
                "2s",
            ],
        )
        .expect_code(1);
    assert!(
        wait_until(Duration::from_secs(10), || marker().as_deref()
            == Some("one")),
        "release 1 is not served again"
    );

    // Off the proxy: the app binds the port itself.
    repo.commit_app("two", Some("v2"));
    project
        .run_app(
            ENV,
            "web",
            &repo.url(),
            "v2",
            &["--strategy", "recreate", "--replicas", "1"],
        )
        .ok()
        .mentions("the node proxy let go of");
    assert_eq!(marker().as_deref(), Some("two"));
    let status = project
        .deployctl(&["status", "web", "--output", "json"])
        .json();
    assert_eq!(
        status["deployments"][0]["instances"][0]["private_address"], "",
        "{status}"
    );

    // And back behind it.
    repo.commit_app("three", Some("v3"));
    project
        .run_app(ENV, "web", &repo.url(), "v3", &["--strategy", "switch"])
        .ok();
    assert_eq!(marker().as_deref(), Some("three"));
}
