//! The node proxy under faults, with a client calling the app the whole time: a proxy frozen
//! (`kill -STOP`) during a redeploy, a frozen proxy seen and replaced, a `kill -9` that
//! refuses no connection, a route the agent did not decide repaired (and a late one
//! refused), and a damaged routes file.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// `web`, release 1 ("one"), behind the node proxy on port 8000.
fn deployed(agent: &Agent) -> (Project, GitRepo) {
    let project = Project::for_agent(ENV, agent);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    project.run_app(ENV, "web", &repo.url(), "v1", &[]).ok();
    (project, repo)
}

/// The marker of the app that answers on the deployment's port now.
fn marker(agent: &Agent) -> Option<String> {
    match http_get(&agent.app_url(8000, "/")) {
        Some((200, body)) => serde_json::from_str::<Value>(&body).ok()?["marker"]
            .as_str()
            .map(str::to_string),
        _ => None,
    }
}

/// `status web`: its instance on the agent.
fn status(project: &Project) -> Value {
    project
        .deployctl(&["status", "web", "--output", "json"])
        .json()["deployments"][0]["instances"][0]
        .clone()
}

/// Whether `cond` holds at every poll for `period` (polled every 50 ms).
fn holds_for(period: Duration, mut cond: impl FnMut() -> bool) -> bool {
    !wait_until(period, || !cond())
}

fn health(agent: &Agent) -> Option<(u16, String)> {
    http_get(&agent.http_url("/deployments/web/health"))
}

#[test]
fn a_redeploy_while_the_proxy_is_frozen_leaves_requests_on_the_release_that_serves() {
    let agent = Agent::start(&loopback());
    let (project, repo) = deployed(&agent);
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(10);

    let frozen = agent.proxy_pid().expect("the proxy's pid");
    assert!(signal(frozen, Signal::SIGSTOP));
    repo.commit_app("two", Some("v2"));
    let out = project.run_app(ENV, "web", &repo.url(), "v2", &[]);
    // The switch to release 2 waited on the frozen proxy: the deploy failed (or, had the
    // agent replaced the proxy before the switch, it went through). Thawed now, the old
    // proxy may take the switch it had queued — when the agent has not killed it yet.
    signal(frozen, Signal::SIGCONT);
    let (serving, release) = if out.code == 0 {
        ("two", 2)
    } else {
        out.mentions("node proxy");
        ("one", 1)
    };
    let began = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || (0..5)
            .all(|_| marker(&agent).as_deref() == Some(serving))),
        "requests do not go to release {release}, which serves (now: {:?})\n{out}",
        marker(&agent)
    );
    let settled = began.elapsed();
    assert!(
        holds_for(Duration::from_secs(3), || marker(&agent).as_deref()
            == Some(serving)),
        "requests left release {release} again"
    );
    let s = status(&project);
    assert_eq!(s["release"], release, "{s}");
    assert_eq!(s["state"], "healthy", "{s}");
    assert_eq!(health(&agent).map(|h| h.0), Some(200));
    load.wait_for(10);
    let seen = load.finish();
    assert_eq!(seen.refused, 0, "{seen:?}");
    eprintln!(
        "deploy exit {}, requests on release {release} {} ms after the thaw; {} answers, {} failed",
        out.code,
        settled.as_millis(),
        seen.ok,
        seen.failed.len()
    );
}

#[test]
fn a_frozen_proxy_is_seen_within_seconds_and_replaced() {
    let agent = Agent::start(&loopback());
    let (project, _repo) = deployed(&agent);
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(10);
    assert_eq!(health(&agent).map(|h| h.0), Some(200));

    let frozen = agent.proxy_pid().expect("the proxy's pid");
    assert!(signal(frozen, Signal::SIGSTOP));
    let began = Instant::now();
    let (mut lb, mut said) = (None, None);
    let seen = wait_until(Duration::from_secs(8), || {
        if lb.is_none() {
            if let Some((503, body)) = health(&agent) {
                if body.contains("node proxy not answering") {
                    lb = Some((began.elapsed(), body));
                }
            }
        }
        if said.is_none() {
            let s = status(&project);
            let message = s["message"].as_str().unwrap_or_default();
            if s["state"] == "unhealthy" && message.contains("node proxy not answering") {
                said = Some(s);
            }
        }
        lb.is_some() && said.is_some()
    });
    assert!(
        seen,
        "while the proxy is stopped: health {lb:?}, status {said:?} ({:?})",
        health(&agent)
    );
    let (lb_after, body) = lb.unwrap_or_default();
    assert!(
        lb_after < Duration::from_secs(5),
        "503 after {lb_after:?}: {body}"
    );
    let said = said.unwrap_or_default();
    assert!(said["traffic"].is_null(), "no stale traffic: {said}");

    assert!(
        wait_until(Duration::from_secs(10), || agent
            .proxy_pid()
            .is_some_and(|p| p != frozen)
            && !pid_alive(frozen)),
        "the frozen proxy (pid {frozen}) is not replaced"
    );
    let replaced = began.elapsed();
    load.wait_for(10);
    assert!(
        wait_until(Duration::from_secs(5), || health(&agent).map(|h| h.0)
            == Some(200)),
        "{:?}",
        health(&agent)
    );
    assert_eq!(status(&project)["state"], "healthy");
    let seen = load.finish();
    assert_eq!(seen.refused, 0, "{seen:?}");
    assert!(agent.stderr().contains("node proxy not answering"));
    eprintln!(
        "503 after {} ms, replaced after {} ms; the client's longest wait {} ms, {} failed",
        lb_after.as_millis(),
        replaced.as_millis(),
        seen.longest_gap.as_millis(),
        seen.failed.len()
    );
}

#[test]
fn a_proxy_killed_under_load_refuses_no_connection() {
    let agent = Agent::start(&loopback());
    let (_project, _repo) = deployed(&agent);
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(20);

    let old = agent.proxy_pid().expect("the proxy's pid");
    assert!(signal(old, Signal::SIGKILL));
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .proxy_pid()
            .is_some_and(|p| p != old)),
        "the agent starts no other proxy"
    );
    load.wait_for(50);
    let seen = load.finish();
    assert_eq!(seen.refused, 0, "{seen:?}");
    assert!(
        seen.failed.len() <= 1,
        "only the request in flight may fail: {:?}",
        seen.failed
    );
    assert!(
        seen.longest_gap < Duration::from_secs(1),
        "the port was not served for {:?}",
        seen.longest_gap
    );
    assert!(
        agent.stderr().contains("was killed by SIGKILL"),
        "{}",
        agent.stderr()
    );
    eprintln!(
        "{} answers, {} refused, {} failed, the longest wait {} ms",
        seen.ok,
        seen.refused,
        seen.failed.len(),
        seen.longest_gap.as_millis()
    );
}

#[test]
fn a_route_the_agent_did_not_decide_is_repaired_and_a_late_one_refused() {
    let agent = Agent::start(&loopback());
    let (_project, _repo) = deployed(&agent);
    let table = agent
        .proxy_control(r#"{"op":"table"}"#)
        .expect("the proxy answers");
    let decided = table["table"][0].clone();
    assert_eq!(decided["name"], "web", "{table}");

    // A route to a port nothing listens on, newer than anything the agent sent.
    let mut rogue = decided.clone();
    rogue["backends"] = json!([{"addr": format!("{}:1", agent.ip), "release": 99}]);
    rogue["generation"] = json!(1u64 << 40);
    let reply = agent.proxy_control(&json!({"op": "set_route", "route": rogue}).to_string());
    assert_eq!(reply.as_ref().map(|r| r["ok"].clone()), Some(json!(true)));
    let began = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || marker(&agent).as_deref()
            == Some("one")),
        "the agent did not route the port back to release 1"
    );
    assert!(
        wait_until(Duration::from_secs(5), || agent
            .stderr()
            .contains("not as the agent decided")),
        "no warning: {}",
        agent.stderr()
    );
    let repaired = began.elapsed();

    // Older than what the proxy has: refused, nothing changes.
    let mut late = rogue.clone();
    late["generation"] = json!(1);
    let reply = agent
        .proxy_control(&json!({"op": "set_route", "route": late}).to_string())
        .expect("the proxy answers");
    assert_eq!(
        (reply["ok"].clone(), reply["stale"].clone()),
        (json!(false), json!(true)),
        "{reply}"
    );
    assert_eq!(marker(&agent).as_deref(), Some("one"));
    eprintln!("repaired within {} ms", repaired.as_millis());
}

#[test]
fn a_damaged_routes_file_and_a_proxy_restart_take_no_port_offline() {
    let agent = Agent::start(&loopback());
    let (_project, _repo) = deployed(&agent);
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(10);

    // A write cut short (a full disk), then the proxy dies.
    let file = agent.data_dir.join("proxy/routes.json");
    let text = std::fs::read_to_string(&file).expect("routes.json");
    std::fs::write(&file, &text[..text.len() / 2]).expect("damaging routes.json");
    let old = agent.proxy_pid().expect("the proxy's pid");
    assert!(signal(old, Signal::SIGKILL));
    assert!(wait_until(Duration::from_secs(5), || agent
        .proxy_pid()
        .is_some_and(|p| p != old)));
    load.wait_for(20);
    let seen = load.finish();
    assert_eq!(seen.refused, 0, "{seen:?}");
    assert!(seen.failed.len() <= 1, "{:?}", seen.failed);
    assert!(
        agent
            .proxy_log()
            .contains("could not read part of the routes file"),
        "the proxy does not say what it could not read:\n{}",
        agent.proxy_log()
    );
}

#[test]
fn an_adopted_proxy_hands_its_sockets_over_and_a_kill_after_refuses_nothing() {
    let mut agent = Agent::start(&loopback());
    let (_project, _repo) = deployed(&agent);
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(10);

    // The agent crashes; the proxy serves on; the restarted agent adopts it.
    let proxy = agent.proxy_pid().expect("the proxy's pid");
    agent.kill9();
    load.wait_for(10);
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .stderr()
            .contains("adopted the node proxy")
            && http_get(&agent.http_url("/readyz")).map(|r| r.0) == Some(200)),
        "the restarted agent did not adopt the proxy"
    );
    assert_eq!(agent.proxy_pid(), Some(proxy));

    // It took duplicates of the proxy's sockets: a kill -9 now refuses nothing either.
    assert!(signal(proxy, Signal::SIGKILL));
    assert!(wait_until(Duration::from_secs(5), || agent
        .proxy_pid()
        .is_some_and(|p| p != proxy)));
    load.wait_for(20);
    let seen = load.finish();
    assert_eq!(seen.refused, 0, "{seen:?}");
    assert!(seen.failed.len() <= 1, "{:?}", seen.failed);
}
