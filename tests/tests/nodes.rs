//! `deployctl nodes`: each agent of an env, reachable or not, with what it runs on.

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn nodes_shows_each_agent() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("noded", Some("v1"));
    project.run_app(ENV, "web", &repo.url(), "v1", &[]).ok();

    let out = project.deployctl(&["nodes", "--env", ENV, "--output", "json"]);
    out.ok();
    let v = out.json();
    let nodes = v["nodes"].as_array().expect("nodes is an array");
    assert_eq!(nodes.len(), 1, "{v:#}");
    let n = &nodes[0];
    assert_eq!(n["agent"], agent.address(), "{n:#}");
    assert_eq!(n["reachable"], true, "{n:#}");
    assert_eq!(n["version"], env!("CARGO_PKG_VERSION"), "{n:#}");
    assert!(!n["hostname"].as_str().unwrap_or("").is_empty(), "{n:#}");
    assert!(n["cpus"].as_u64().unwrap_or(0) >= 1, "{n:#}");
    assert!(n["memory_total_bytes"].as_u64().unwrap_or(0) > 0, "{n:#}");
    assert!(n["memory_used_bytes"].as_u64().unwrap_or(0) > 0, "{n:#}");
    assert!(n["disk_total_bytes"].as_u64().unwrap_or(0) > 0, "{n:#}");
    assert!(n["load"].as_array().is_some_and(|l| l.len() == 3), "{n:#}");
    assert_eq!(n["deployments"], 1, "{n:#}");

    let text = project.deployctl(&["nodes", "--env", ENV]);
    text.ok()
        .mentions("REACHABLE")
        .mentions(&agent.address())
        .mentions("yes");

    // An env with an agent that does not answer: listed as unreachable, exit 1.
    project
        .deployctl(&[
            "declare",
            "env",
            "agent",
            "gone",
            "--address",
            &format!("http://{ip}:1"),
        ])
        .ok();
    let out = project.deployctl(&["nodes", "--output", "json"]);
    out.expect_code(1);
    let v = out.json();
    let nodes = v["nodes"].as_array().expect("nodes is an array");
    let gone = nodes
        .iter()
        .find(|n| n["agent"] == format!("http://{ip}:1"))
        .unwrap_or_else(|| panic!("the unreachable agent is listed: {v:#}"));
    assert_eq!(gone["reachable"], false, "{gone:#}");
    assert!(
        gone["error"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{ip}:1")),
        "{gone:#}"
    );
    assert!(nodes.iter().any(|n| n["reachable"] == true), "{v:#}");
    project
        .deployctl(&["nodes", "--env", "gone"])
        .expect_code(1)
        .mentions("NO");
}
