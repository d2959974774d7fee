//! Ports: two deployments side by side, a port another deployment holds, a port a foreign
//! process holds.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

fn run<'a>(name: &'a str, repo: &'a str, port: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        name,
        "--env",
        ENV,
        "--repo",
        repo,
        "--ref",
        "v1",
        "--command",
        "python3 app.py",
        "--port",
        port,
        "--health-path",
        "/health",
        "--health-timeout",
        "20s",
    ]
}

#[test]
fn two_deployments_and_a_port_conflict() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("shared-code", Some("v1"));
    let url = repo.url();

    project
        .deployctl(&run("alpha", &url, "8000"))
        .ok()
        .mentions(&format!("http://{ip}:8000"));
    project
        .deployctl(&run("beta", &url, "8001"))
        .ok()
        .mentions(&format!("http://{ip}:8001"));
    let a = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    let b = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(10));
    assert_eq!(a["name"], "alpha", "{a}");
    assert_eq!(b["name"], "beta", "{b}");

    let out = project.deployctl(&run("gamma", &url, "8000"));
    out.expect_code(1).mentions("8000").mentions("alpha");

    let a = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(5));
    assert_eq!(a["name"], "alpha", "alpha must keep its port: {a}");
    assert_eq!(a["release"], "1", "{a}");
    project.status_json("alpha").0.ok();
    project.status_json("beta").0.ok();
    assert_eq!(project.deployctl(&["status", "gamma"]).code, 1);

    let all = project.deployctl(&["status", "--output", "json"]);
    let names: Vec<String> = all.json()["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str().map(String::from))
        .collect();
    assert!(
        names.contains(&"alpha".into()) && names.contains(&"beta".into()),
        "{all}"
    );
}

#[test]
fn foreign_process_on_the_port_is_named() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("blocked", Some("v1"));

    // This test process holds the port.
    let holder = std::net::TcpListener::bind(format!("{ip}:8000"))
        .unwrap_or_else(|e| panic!("binding {ip}:8000: {e}"));
    let out = project.deployctl(&run("blocked", &repo.url(), "8000"));
    out.expect_code(1)
        .mentions("8000")
        .mentions(&format!("pid {}", std::process::id()));
    assert_ne!(project.deployctl(&["status", "blocked"]).code, 0);
    drop(holder);
}
