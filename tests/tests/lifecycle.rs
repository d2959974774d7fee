//! After a deploy: logs, and remove (which must kill the app's whole process group).

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn remove_kills_app_and_its_child() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("parent", Some("v1"));
    project
        .deployctl(&[
            "run",
            "forky",
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
            "--env-var",
            "APP_CHILD=1",
            "--health-path",
            "/health",
        ])
        .ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    let app_pid = served["pid"].as_u64().expect("app pid") as u32;
    let child_pid = served["child_pid"].as_u64().expect("child pid") as u32;
    assert!(pid_alive(app_pid) && pid_alive(child_pid), "{served}");
    let leader = agent
        .record("forky")
        .and_then(|r| r["pid"].as_u64())
        .expect("record has a pid") as u32;
    assert!(pid_alive(leader));
    assert!(agent.deployment_dir("forky").is_dir());

    project.deployctl(&["remove", "forky"]).ok();

    for (what, pid) in [
        ("app", app_pid),
        ("child", child_pid),
        ("group leader", leader),
    ] {
        assert!(
            wait_until(Duration::from_secs(15), || !pid_alive(pid)),
            "the {what} (pid {pid}) still runs after remove"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || !agent
            .deployment_dir("forky")
            .exists()),
        "{} still exists after remove",
        agent.deployment_dir("forky").display()
    );
    assert!(
        http_get(&agent.app_url(8000, "/")).is_none(),
        "something still answers on 8000"
    );
    let status = project.deployctl(&["status", "forky"]);
    assert_eq!(status.code, 1, "status of a removed deployment\n{status}");
    let list = project.deployctl(&["list"]);
    list.ok();
    assert!(
        !list.stdout.contains("forky"),
        "removed deployment still listed\n{list}"
    );
    // The declaration stays.
    assert!(project.path().join("forky.deploy.yaml").is_file());
}

#[test]
fn logs_show_app_output_and_deploy_steps() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("chatty-marker", Some("v1"));
    project.run_app(ENV, "chatty", &repo.url(), "v1", &[]).ok();

    // Behind the node proxy, on a private port of the agent's own loopback address.
    let want = format!("app chatty-marker listening on {}:", agent.ip);
    assert!(
        wait_until(Duration::from_secs(10), || agent
            .app_log("chatty")
            .contains(&want)),
        "the app's line is not in app.log:\n{}",
        agent.app_log("chatty")
    );
    let mut last = None;
    let found = wait_until(Duration::from_secs(10), || {
        let out = project.deployctl(&["logs", "chatty", "-n", "50"]);
        let ok = out.code == 0 && out.stdout.contains(&want);
        last = Some(out);
        ok
    });
    assert!(
        found,
        "logs -n 50 does not show the app's line {want:?}\n{}",
        last.unwrap()
    );

    let out = project.deployctl(&["logs", "chatty", "--deploy"]);
    out.ok();
    for step in ["resolve", "fetch", "checkout", "start", "health"] {
        out.mentions(step);
    }

    // Unknown deployment: an error, not an empty success.
    let out = project.deployctl(&["logs", "nope"]);
    assert_ne!(out.code, 0, "{out}");
}

#[test]
fn remove_unknown_deployment_fails() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let out = project.deployctl(&["remove", "never-deployed"]);
    out.expect_code(1).mentions("never-deployed");
}
