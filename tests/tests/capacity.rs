//! Node capacity: `deployctl nodes` shows what the deployments' limits add up to next to
//! the node's memory, CPUs and GPUs, and a deploy whose limits do not fit is refused
//! before anything runs.

use deployctl_e2e::*;

const ENV: &str = "e2e";
const MIB: u64 = 1024 * 1024;

/// The one agent of `nodes --output json`.
fn node(project: &Project) -> serde_json::Value {
    let out = project.deployctl(&["nodes", "--env", ENV, "--output", "json"]);
    out.ok();
    let v = out.json();
    let nodes = v["nodes"].as_array().expect("nodes is an array");
    assert_eq!(nodes.len(), 1, "{v:#}");
    nodes[0].clone()
}

#[test]
fn nodes_shows_what_the_limits_add_up_to_and_a_deploy_beyond_it_is_refused() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("capacity", Some("v1"));

    // Nothing deployed: nothing promised.
    let n = node(&project);
    assert_eq!(n["memory_committed_bytes"], 0, "{n:#}");
    assert_eq!(n["cpus_committed"], 0.0, "{n:#}");

    project
        .run_app(ENV, "big", &repo.url(), "v1", &["--memory", "256M"])
        .ok();
    project
        .run_app(
            ENV,
            "small",
            &repo.url(),
            "v1",
            &["--port", "8001", "--memory", "128M", "--cpus", "0.5"],
        )
        .ok();

    let n = node(&project);
    assert_eq!(n["reachable"], true, "{n:#}");
    assert_eq!(n["deployments"], 2, "{n:#}");
    assert_eq!(n["memory_committed_bytes"], 384 * MIB, "{n:#}");
    assert_eq!(n["cpus_committed"], 0.5, "{n:#}");
    assert_eq!(n["overcommit"], 1.0, "{n:#}");
    // The test nodes have no NVIDIA GPU.
    assert_eq!(n["gpus_total"], 0, "{n:#}");
    assert_eq!(n["gpus_free"], 0, "{n:#}");
    assert_eq!(n["gpus"], serde_json::json!([]), "{n:#}");
    // It enforces the memory limits it accepted.
    let enforced = n["limits_enforced"].as_str().unwrap_or("");
    assert!(enforced.contains("memory"), "{n:#}");
    // The existing keys are still there.
    let total = n["memory_total_bytes"].as_u64().unwrap_or(0);
    assert!(total > 384 * MIB, "{n:#}");
    assert!(n["cpus"].as_u64().unwrap_or(0) >= 1, "{n:#}");

    // The table says the same in words.
    project
        .deployctl(&["nodes", "--env", ENV])
        .ok()
        .mentions("REACHABLE")
        .mentions("384 MiB promised, overcommit 1.0")
        .mentions("(0.5 promised)")
        .mentions("no GPUs")
        .mentions(&format!("enforced: {enforced}"));

    // More memory than the node has: refused before anything runs, naming the field.
    let out = project.run_app(
        ENV,
        "huge",
        &repo.url(),
        "v1",
        &["--port", "8002", "--memory", "100000G"],
    );
    assert_ne!(out.code, 0, "{out}");
    out.mentions("resources.memory").mentions("does not fit");
    assert!(agent.record("huge").is_none());
    // Nothing was promised to it.
    let n = node(&project);
    assert_eq!(n["deployments"], 2, "{n:#}");
    assert_eq!(n["memory_committed_bytes"], 384 * MIB, "{n:#}");
}
