//! Fleet rollouts: `run --canary` deploys to the env's first agent alone, and the others
//! follow only once it is healthy; `--max-parallel N` deploys N agents at a time.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "fleet";

/// Each agent's release of `name`, in the env's order.
fn releases(project: &Project, agents: &[&Agent], name: &str) -> Vec<u64> {
    let status = project
        .deployctl(&["status", name, "--output", "json"])
        .json();
    let instances = status["deployments"][0]["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    agents
        .iter()
        .map(|a| {
            instances
                .iter()
                .find(|i| i["agent"] == a.address().as_str())
                .and_then(|i| i["release"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn a_canary_that_fails_leaves_the_other_agents_untouched() {
    let (ia, ib, ic) = (loopback(), loopback(), loopback());
    let (a, b, c) = (Agent::start(&ia), Agent::start(&ib), Agent::start(&ic));
    let project = Project::for_agents(ENV, &[&a, &b, &c]);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    project.run_app(ENV, "api", &repo.url(), "v1", &[]).ok();

    // Release 2 never becomes healthy on a (its health file exists there only).
    let flags = shared_dir();
    std::fs::write(flags.path().join(format!("sick-{ia}")), "").unwrap();
    let pattern = flags.path().join("sick-{PUBLIC_HOST}");
    repo.commit_app("two", Some("v2"));
    let out = project.run_app(
        ENV,
        "api",
        &repo.url(),
        "v2",
        &[
            "--canary",
            "--health-timeout",
            "2s",
            "--env-var",
            &format!("APP_HEALTH_FILE={}", pattern.display()),
        ],
    );
    out.expect_code(1)
        .mentions("canary")
        .mentions(&format!("the canary {} failed", a.address()))
        .mentions("2 not deployed");
    assert_eq!(releases(&project, &[&a, &b, &c], "api"), [1, 1, 1]);
    let v1 = wait_for_json(&b.app_url(8000, "/"), Duration::from_secs(5));
    assert_eq!(v1["marker"], "one", "b still serves release 1");

    // Healthy on a: the canary passes and the others follow.
    std::fs::remove_file(flags.path().join(format!("sick-{ia}"))).unwrap();
    project
        .run_app(
            ENV,
            "api",
            &repo.url(),
            "v2",
            &["--canary", "--max-parallel", "1"],
        )
        .ok()
        .mentions(&format!("→ canary: {}", a.address()))
        .mentions("→ wave 3/3");
    // (Release numbers are each agent's own: a's failed release 2 is in its history.)
    assert_eq!(releases(&project, &[&a, &b, &c], "api"), [3, 2, 2]);
}
