//! `logs NAME --since DUR --timestamps`: lines from the last DUR, each with the time the
//! agent received it.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// Unix milliseconds now.
fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn logs_since_and_timestamps_use_the_time_the_agent_received_each_line() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("stamped", Some("v1"));
    project.run_app(ENV, "svc", &repo.url(), "v1", &[]).ok();
    let listening = |out: &Output| out.stdout.matches("listening on").count();

    // The first line is stamped (by the agent's note of it) with a time before `mid`.
    let stamped_once = wait_until(Duration::from_secs(10), || {
        let out = project.deployctl(&["logs", "svc", "--timestamps"]);
        out.stdout
            .lines()
            .any(|l| l.starts_with("20") && l.contains("listening on"))
    });
    assert!(stamped_once, "no stamped line");
    let mid = now_ms() + 300;
    assert!(wait_until(Duration::from_secs(2), || now_ms() > mid + 300));
    let mid_text = {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(mid as u64);
        humantime::format_rfc3339_millis(t).to_string()
    };

    // A second process writes the same line again, after `mid`.
    project.deployctl(&["restart", "svc"]).ok();
    assert!(wait_until(Duration::from_secs(10), || {
        listening(&project.deployctl(&["logs", "svc"])) == 2
    }));
    let since = project.deployctl(&["logs", "svc", "--since", &mid_text]);
    since.ok();
    assert_eq!(
        listening(&since),
        1,
        "--since {mid_text} shows the later line only\n{since}"
    );
    let ago = project.deployctl(&["logs", "svc", "--since", "1h", "-t"]);
    ago.ok();
    assert_eq!(listening(&ago), 2, "{ago}");
    let stamps: Vec<&str> = ago
        .stdout
        .lines()
        .filter(|l| l.contains("listening on"))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert!(
        stamps[0] < mid_text.as_str() && stamps[1] >= mid_text.as_str(),
        "{stamps:?} around {mid_text}"
    );
    project
        .deployctl(&["logs", "svc", "--since", "yesterday"])
        .expect_code(2)
        .mentions("--since");
}
