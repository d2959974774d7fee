//! What the kernel does to an app is visible where a user looks: an OOM kill at the memory
//! limit in `/metrics` (`app_oom_kills_total`) and `status --output json` (the limit and the
//! kills), CPU throttling under a `cpus` quota in `status --output json`.

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

/// The first instance in `status NAME --output json`.
fn instance(project: &Project, name: &str) -> Value {
    // (It exits 1 while the deployment is not healthy.)
    let doc = project
        .deployctl(&["status", name, "--output", "json"])
        .json();
    doc["deployments"][0]["instances"][0].clone()
}

/// The value of the sample `name{deployment="DEPLOYMENT"}` in `/metrics`.
fn sample(agent: &Agent, name: &str, deployment: &str) -> Option<f64> {
    let (code, body) = http_get(&agent.http_url("/metrics"))?;
    assert_eq!(code, 200, "{body}");
    let prefix = format!("{name}{{deployment=\"{deployment}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn an_oom_kill_shows_in_metrics_and_status_and_throttling_in_status() {
    require_root("cgroup limits need the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write("hog.py", HOG_PY);
    repo.write("spin.py", SPIN_PY);
    repo.commit_app("oom", None);
    let url = repo.url();
    project
        .run_on_port(
            "hog",
            &url,
            "python3 hog.py",
            "8000",
            &["--memory", "64M", "--restart", "never"],
        )
        .ok();
    project
        .run_on_port("spin", &url, "python3 spin.py", "8001", &["--cpus", "0.5"])
        .ok();

    // The OOM kill: in the status (reason, kills, limit) ...
    let mut last = Value::Null;
    let killed = wait_until(Duration::from_secs(20), || {
        last = instance(&project, "hog");
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("out of memory at its 64 MiB limit"))
            && last["oom_kills"].as_u64().unwrap_or(0) >= 1
    });
    assert!(killed, "status does not count the OOM kill:\n{last:#}");
    assert_eq!(last["memory_limit_bytes"], 64 * 1024 * 1024, "{last:#}");
    assert_eq!(last["oom_killed"], true, "{last:#}");
    // ... in the human status ...
    project
        .deployctl(&["status", "hog"])
        .mentions("out of memory at its 64 MiB limit");
    // ... and in /metrics, with the limit.
    let mut oom = None;
    let counted = wait_until(Duration::from_secs(5), || {
        oom = sample(&agent, "deploy_agent_app_oom_kills_total", "hog");
        oom.is_some_and(|n| n >= 1.0)
    });
    assert!(counted, "app_oom_kills_total of hog: {oom:?}");

    // The spinner at half a core is throttled, and status says so.
    let mut spin = Value::Null;
    let throttled = wait_until(Duration::from_secs(5), || {
        spin = instance(&project, "spin");
        spin["cpu_throttled_periods"].as_u64().unwrap_or(0) > 0
    });
    assert!(throttled, "no CPU throttling in status:\n{spin:#}");
    assert!(
        spin["cpu_throttled_seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{spin:#}"
    );
    project
        .deployctl(&["status", "spin"])
        .ok()
        .mentions("throttled: ")
        .mentions("% of periods");
    let mut periods = None;
    let counted = wait_until(Duration::from_secs(5), || {
        periods = sample(
            &agent,
            "deploy_agent_app_cpu_throttled_periods_total",
            "spin",
        );
        periods.is_some_and(|n| n > 0.0)
    });
    assert!(
        counted,
        "app_cpu_throttled_periods_total of spin: {periods:?}"
    );
    assert!(
        sample(&agent, "deploy_agent_app_memory_limit_bytes", "spin").is_none(),
        "a memory limit for a deployment without one"
    );
}
