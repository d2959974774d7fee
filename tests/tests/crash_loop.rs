//! A crash-looping app: the restart policy backs off (restarts grow apart), `status` shows
//! the restarts, the last exit code and when the next try is, and the agent stays responsive
//! and idle meanwhile.

use std::time::{Duration, Instant};

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// The agent's CPU time so far (user + system), from `/proc/PID/stat`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; f[0] is field 3.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// The start times the app printed, in seconds.
fn starts(agent: &Agent) -> Vec<f64> {
    agent
        .app_log("crashy")
        .lines()
        .filter_map(|l| l.strip_prefix("crashy start "))
        .filter_map(|t| t.trim().parse().ok())
        .collect()
}

#[test]
fn crash_loop_backs_off_and_agent_stays_responsive() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", CRASH_AFTER_PY);
    repo.commit("crashes a second after it starts");
    repo.tag("v1");
    project
        .run_app(
            ENV,
            "crashy",
            &repo.url(),
            "v1",
            &["--restart", "on-failure"],
        )
        .ok();
    let agent_pid = agent.pid().expect("the agent runs");
    let cpu_before = cpu_ticks(agent_pid);
    let began = Instant::now();

    // Watch it crash and come back: 1 s up, then 1 s, 2 s, 4 s of backoff.
    let mut saw_next_restart = false;
    let mut slowest_healthz = Duration::ZERO;
    let mut last = serde_json::Value::Null;
    let enough = wait_until(Duration::from_secs(40), || {
        let t = Instant::now();
        let h = http_get(&agent.http_url("/healthz"));
        slowest_healthz = slowest_healthz.max(t.elapsed());
        assert_eq!(
            h.map(|r| r.0),
            Some(200),
            "/healthz must answer during the crash loop"
        );
        let (_, dep) = project.status_json("crashy");
        last = dep["instances"][0].clone();
        if last["next_restart_in_s"].as_u64().unwrap_or(0) > 0 {
            saw_next_restart = true;
            assert_eq!(last["last_exit_code"], 3, "{last:#}");
        }
        starts(&agent).len() >= 4
    });
    let starts = starts(&agent);
    assert!(
        enough,
        "fewer than 4 starts within 40 s: {starts:?}\nlast status: {last:#}"
    );
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|w| w[1] > w[0] + 0.5),
        "restarts must grow apart (backoff): gaps {gaps:?}"
    );
    assert!(
        saw_next_restart,
        "status never showed when the next try is: {last:#}"
    );

    let (out, dep) = project.status_json("crashy");
    let inst = &dep["instances"][0];
    assert!(inst["restarts"].as_u64().unwrap_or(0) >= 2, "{out}");
    let text = project.deployctl(&["status", "crashy"]);
    text.mentions("last exit code 3");

    // The agent stayed idle: well under a tenth of a core over the loop.
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let cpu_s = (cpu_ticks(agent_pid) - cpu_before) as f64 / ticks_per_s;
    let wall = began.elapsed().as_secs_f64();
    assert!(
        cpu_s < 0.1 * wall,
        "the agent used {cpu_s:.2} s of CPU in {wall:.1} s of crash loop"
    );
    assert!(
        slowest_healthz < Duration::from_secs(1),
        "/healthz took {slowest_healthz:?}"
    );
}
