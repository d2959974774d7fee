//! `deployctl clone` beside the original on the same agent: the original's port is held, so
//! the clone is refused before anything is deployed, naming a free port; `--port auto`
//! deploys the copy on that one.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn clone_beside_the_original_names_a_free_port_and_auto_takes_it() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("original", Some("v1"));
    project
        .run_app(ENV, "iris", &repo.url(), "v1", &["--health-timeout", "30s"])
        .ok();

    // The README's clone, as is: it would take 8000, which iris holds.
    project
        .deployctl(&["clone", "iris", "iris-ml"])
        .expect_code(2)
        .mentions(
            "iris-ml would listen on port 8000 (the original's port), which deployment iris holds",
        )
        .mentions("clone with --port 8001 (free on env e2e's agents), or --port auto");
    assert!(
        agent.record("iris-ml").is_none(),
        "a refused clone deployed"
    );
    assert!(!project.path().join("iris-ml.deploy.yaml").exists());

    // auto: the free port, and the copy serves there beside the original.
    project
        .deployctl(&["clone", "iris", "iris-ml", "--port", "auto"])
        .ok()
        .mentions("Port 8001 for iris-ml (8000 is held by deployment iris)")
        .mentions(&format!("http://{ip}:8001"));
    let copy = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(10));
    assert_eq!(copy["name"], "iris-ml", "{copy}");
    let original = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(original["name"], "iris", "{original}");
    assert!(project.read("iris-ml.deploy.yaml").contains("port: 8001"));

    // An explicit port another deployment holds: refused too, with the next free one.
    project
        .deployctl(&["clone", "iris", "iris-b", "--port", "8001"])
        .expect_code(2)
        .mentions("port 8001 (--port), which deployment iris-ml holds")
        .mentions("--port 8002");
    project
        .deployctl(&["clone", "iris", "iris-b", "--port", "eighty"])
        .expect_code(2)
        .mentions("give a number (e.g. 8001) or auto");
    assert!(agent.record("iris-b").is_none());
}
