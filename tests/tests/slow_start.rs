//! A model that takes a while to load: the deploy waits up to `health.startup_timeout`
//! (`timeout`, its old name, still read) and says every few seconds how it goes, with the
//! app's last line, instead of going quiet.

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// The standard app loading its "model" for `load_seconds` ([`APP_PY`]'s `APP_SLOW_START`).
fn declaration(repo: &str, health: &str, load_seconds: u32) -> String {
    format!(
        "env: {ENV}\nrepo: {repo}\nref: v1\ncommand: python3 app.py\nenv_vars:\n  APP_SLOW_START: {load_seconds}\nhealth:\n  path: /health\n{health}"
    )
}

#[test]
fn a_model_that_loads_for_40_s_deploys_within_its_startup_timeout_and_says_how_it_goes() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("loaded", Some("v1"));

    // `timeout` is still read: 3 s is too short for an 8 s load.
    project.write(
        "slow.deploy.yaml",
        &declaration(&repo.url(), "  timeout: 3s\n", 8),
    );
    project
        .deployctl(&["run", "slow"])
        .expect_code(1)
        .mentions("health")
        .mentions("3s");

    // `startup_timeout: 2m`: 40 s of loading is fine, and the deploy says how it goes.
    project.write(
        "slow.deploy.yaml",
        &declaration(&repo.url(), "  startup_timeout: 2m\n", 40),
    );
    let out = project.deployctl(&["run", "slow"]);
    out.ok()
        .mentions("still starting")
        .mentions("of 2m")
        .mentions("Loading checkpoint shards");
    let progress = out
        .all()
        .lines()
        .filter(|l| l.contains("still starting"))
        .count();
    assert!(progress >= 5, "a progress line every 5 s of 40: {out}");
    let served = get_json(&agent.app_url(8000, "/")).expect("it serves");
    assert_eq!(served["marker"], "loaded", "{served}");
    let written = project.read("slow.deploy.yaml");
    assert!(written.contains("startup_timeout: 2m"), "{written}");
}
