//! `replicas: N`: N processes of the release on one node behind the deployment's port,
//! balanced by the node proxy; one that is killed is restarted while the others serve; a
//! redeploy replaces all of them; all under a client that never sees a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// Each instance's pid and state from `status NAME --output json`.
fn replicas(project: &Project, name: &str) -> Vec<(u64, String)> {
    project
        .replicas_json(name)
        .iter()
        .map(|r| {
            (
                r["pid"].as_u64().unwrap_or(0),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn all_healthy(r: &[(u64, String)]) -> bool {
    r.len() == 3 && r.iter().all(|(pid, state)| *pid > 0 && state == "healthy")
}

/// The distinct app processes (their own pids) that answer `n` calls.
fn answering_pids(url: &str, n: usize) -> BTreeSet<u64> {
    (0..n)
        .filter_map(|_| get_json(url).and_then(|v| v["pid"].as_u64()))
        .collect()
}

#[test]
fn three_replicas_share_the_load_survive_a_kill_and_are_all_replaced_by_a_redeploy() {
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
            &[
                "--replicas",
                "3",
                "--health-interval",
                "200ms",
                "--restart",
                "always",
            ],
        )
        .ok()
        .mentions("3 replicas: pids");
    let first = replicas(&project, "model");
    assert!(all_healthy(&first), "{first:?}");
    let url = agent.app_url(8000, "/");
    assert_eq!(
        answering_pids(&url, 9).len(),
        3,
        "the proxy spreads requests over the three"
    );
    project
        .deployctl(&["status", "model"])
        .ok()
        .mentions("from 3 replicas");

    // One is killed while loaded: the others serve, it is restarted. (A request the victim
    // was answering at that instant dies with it: at most one or two, never more.)
    let load = Load::start(&url);
    load.wait_for(20);
    let victim = first[1].0 as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = replicas(&project, "model");
            all_healthy(&now) && !now.iter().any(|(p, _)| *p == victim as u64)
        }),
        "the killed replica was not restarted: {now:?}"
    );
    load.wait_for(20);
    let during_kill = load.finish();
    assert!(
        during_kill.failed.len() <= 2,
        "requests failed besides the victim's: {during_kill:?}"
    );
    assert_eq!(during_kill.markers, ["one"], "{during_kill:?}");

    // A redeploy replaces all three, and not one request fails.
    let load = Load::start(&url);
    load.wait_for(20);
    repo.commit_app("two", Some("v2"));
    project
        .run_app(ENV, "model", &repo.url(), "v2", &["--replicas", "3"])
        .ok()
        .mentions("new requests go to release 2");
    load.wait_for(20);
    let seen = load.finish();
    assert!(seen.failed.is_empty(), "failed requests: {seen:?}");
    assert_eq!(seen.markers, ["one", "two"], "{seen:?}");
    let after = replicas(&project, "model");
    assert!(all_healthy(&after), "{after:?}");
    for (pid, _) in &now {
        assert!(
            !after.iter().any(|(p, _)| p == pid),
            "{pid} of release 1 still listed: {after:?}"
        );
        assert!(
            wait_until(Duration::from_secs(10), || !pid_alive(*pid as u32)),
            "release 1's process {pid} still runs"
        );
    }
}

#[test]
fn an_agent_killed_under_load_adopts_every_replica_again() {
    let mut agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    project
        .run_app(ENV, "model", &repo.url(), "v1", &["--replicas", "3"])
        .ok();
    let before = replicas(&project, "model");
    assert!(all_healthy(&before), "{before:?}");
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(20);
    agent.kill9();
    load.wait_for(20);
    agent.restart();
    let mut after = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            after = replicas(&project, "model");
            all_healthy(&after)
        }),
        "{after:?}"
    );
    assert_eq!(after, before, "the same three processes, adopted");
    load.wait_for(20);
    let seen = load.finish();
    assert!(seen.failed.is_empty(), "failed requests: {seen:?}");
}

#[test]
fn replicas_with_recreate_are_refused_naming_the_field() {
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
            &["--replicas", "2", "--strategy", "recreate"],
        )
        .expect_code(2)
        .mentions("replicas")
        .mentions("strategy switch");
}
