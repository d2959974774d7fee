//! The agent as a node service: apps outlive the agent. `kill -9` of the agent: the apps keep
//! serving and the restarted agent re-adopts them (same pids) and supervises them again.
//! A "reboot" (agent stopped, apps gone): the agent starts every deployment again at the
//! release it had.

use std::time::Duration;

use deployctl_e2e::*;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const ENV: &str = "e2e";

/// [`Project::run_app`] in env e2e on `port`, checked every second.
fn run(project: &Project, name: &str, repo: &str, git_ref: &str, port: &str) -> Output {
    let extra = [
        "--port",
        port,
        "--health-timeout",
        "20s",
        "--health-interval",
        "1s",
    ];
    project.run_app(ENV, name, repo, git_ref, &extra)
}

/// Polls `status NAME --output json` until its first instance satisfies `want`.
fn wait_status(project: &Project, name: &str, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(30), || {
        let out = project.deployctl(&["status", name, "--output", "json"]);
        if let Ok(v) = serde_json::from_str::<Value>(out.stdout.trim()) {
            last = v["deployments"][0]["instances"][0].clone();
        }
        want(&last)
    });
    assert!(
        ok,
        "{name}: {what} did not happen within 30 s; last status: {last:#}"
    );
    last
}

fn pid(inst: &Value) -> u32 {
    inst["pid"].as_u64().unwrap_or(0) as u32
}

/// The app's own pid and release, from what it serves.
fn served(agent: &Agent, port: u16) -> Option<(u64, String)> {
    let v = get_json(&agent.app_url(port, "/"))?;
    Some((v["pid"].as_u64()?, v["release"].as_str()?.to_string()))
}

#[test]
fn kill9_agent_apps_keep_serving_and_are_readopted() {
    let ip = loopback();
    let mut agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("survivor", Some("v1"));
    run(&project, "alpha", &repo.url(), "v1", "8000").ok();
    run(&project, "beta", &repo.url(), "v1", "8001").ok();
    let alpha = wait_status(&project, "alpha", "healthy", |i| i["state"] == "healthy");
    let beta = wait_status(&project, "beta", "healthy", |i| i["state"] == "healthy");
    let (alpha_pid, beta_pid) = (pid(&alpha), pid(&beta));
    assert!(alpha_pid > 1 && beta_pid > 1, "{alpha} {beta}");
    let alpha_served = served(&agent, 8000).expect("alpha answers");
    let beta_served = served(&agent, 8001).expect("beta answers");

    agent.kill9();
    // Both keep answering while no agent runs.
    for _ in 0..5 {
        assert_eq!(served(&agent, 8000), Some(alpha_served.clone()));
        assert_eq!(served(&agent, 8001), Some(beta_served.clone()));
    }
    assert!(
        http_get(&agent.http_url("/healthz")).is_none(),
        "the agent is down"
    );

    agent.restart();
    for (name, before) in [("alpha", alpha_pid), ("beta", beta_pid)] {
        let inst = wait_status(&project, name, "re-adoption (healthy, same pid)", |i| {
            i["state"] == "healthy" && pid(i) == before
        });
        assert_eq!(inst["release"], 1, "{inst:#}");
    }
    assert_eq!(served(&agent, 8000), Some(alpha_served.clone()));
    assert_eq!(served(&agent, 8001), Some(beta_served));
    assert!(
        agent.stderr().contains("adopted"),
        "the agent says it adopted the apps"
    );
    let ready = http_get(&agent.http_url("/readyz"));
    assert_eq!(ready.map(|r| r.0), Some(200), "/readyz after recovery");
    let health = http_get(&agent.http_url("/deployments/alpha/health")).expect("health answers");
    assert_eq!(health.0, 200, "{health:?}");

    // Logs still stream from the adopted app's file.
    let logs = project.deployctl(&["logs", "alpha", "-n", "20"]);
    logs.ok()
        .mentions(&format!("app survivor listening on {}:", agent.ip));

    // The adopted app is supervised: killed, it is restarted by its policy.
    killpg(Pid::from_raw(alpha_pid as i32), Signal::SIGKILL).expect("killing alpha's group");
    let inst = wait_status(&project, "alpha", "restart after the app was killed", |i| {
        i["state"] == "healthy"
            && pid(i) != alpha_pid
            && pid(i) > 1
            && i["restarts"].as_u64() >= Some(1)
    });
    let again = served(&agent, 8000).expect("alpha answers again");
    assert_ne!(again.0, alpha_served.0, "a new process serves: {inst:#}");
    // The record names the new process, for the next restart of the agent.
    let record = agent.record("alpha").expect("alpha's record");
    assert_eq!(
        record["pid"].as_u64(),
        Some(pid(&inst) as u64),
        "{record:#}"
    );
    assert!(record["pid_start_time"].as_u64().is_some(), "{record:#}");
    // beta was never touched.
    let beta_now = wait_status(&project, "beta", "healthy", |i| i["state"] == "healthy");
    assert_eq!(pid(&beta_now), beta_pid);
}

#[test]
fn reboot_starts_every_deployment_at_its_release() {
    let ip = loopback();
    let mut agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("boot-v1", Some("v1"));
    repo.commit_app("boot-v2", Some("v2"));
    run(&project, "alpha", &repo.url(), "v1", "8000").ok();
    run(&project, "alpha", &repo.url(), "v2", "8000").ok();
    run(&project, "beta", &repo.url(), "v1", "8001").ok();
    let alpha = wait_status(&project, "alpha", "healthy", |i| i["state"] == "healthy");
    assert_eq!(alpha["release"], 2, "{alpha:#}");
    let old_pids = [
        pid(&alpha),
        pid(&wait_status(&project, "beta", "healthy", |i| {
            i["state"] == "healthy"
        })),
    ];

    // SIGTERM: a graceful stop of the agent only; the apps keep serving.
    assert!(agent.terminate(), "the agent exits 0 on SIGTERM");
    assert!(served(&agent, 8000).is_some() && served(&agent, 8001).is_some());

    // The "reboot": every app's process group is gone.
    agent.kill_apps();
    assert!(
        wait_until(Duration::from_secs(10), || served(&agent, 8000).is_none()
            && served(&agent, 8001).is_none()),
        "the apps still answer after their groups were killed"
    );

    agent.restart();
    let alpha = wait_status(&project, "alpha", "started again, healthy", |i| {
        i["state"] == "healthy"
    });
    let beta = wait_status(&project, "beta", "started again, healthy", |i| {
        i["state"] == "healthy"
    });
    assert_eq!(
        alpha["release"], 2,
        "alpha comes back at the release it had: {alpha:#}"
    );
    assert_eq!(beta["release"], 1, "{beta:#}");
    assert!(!old_pids.contains(&pid(&alpha)) && !old_pids.contains(&pid(&beta)));
    let (_, release) = served(&agent, 8000).expect("alpha answers");
    assert_eq!(release, "2");
    let v = get_json(&agent.app_url(8000, "/")).unwrap();
    assert_eq!(v["marker"], "boot-v2", "{v}");
    assert!(served(&agent, 8001).is_some(), "beta answers");
}
