//! `status --refresh` after the state was lost: the history gets the release each agent
//! runs (its release number, ref, commit, packages hash), so `env set`, `restart` and a
//! later `rollback` to it work; a rollback to before the refresh says why it cannot.

use deployctl_e2e::*;
use serde_json::Value;

fn history(project: &Project, name: &str) -> Vec<Value> {
    let out = project.deployctl(&["history", name, "--output", "json"]);
    out.ok();
    out.json()["releases"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no releases in the history of {name}\n{out}"))
}

#[test]
fn a_refreshed_state_has_the_running_release_in_its_history() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    project
        .run_app("e2e", "iris", &repo.url(), "v1", &["--port", "8000"])
        .ok();
    let v2 = repo.commit_app("two", Some("v2"));
    project
        .run_app("e2e", "iris", &repo.url(), "v2", &["--port", "8000"])
        .ok();
    let (_, dep) = project.status_json("iris");
    let running = dep["instances"][0].clone();
    assert_eq!(running["release"], 2, "{dep:#}");

    std::fs::remove_file(project.path().join(".deployctl/state.json")).expect("state file");
    project
        .deployctl(&["status", "--refresh"])
        .ok()
        .mentions("1 deployment(s) added")
        .mentions("iris: release 2 (v2) recorded in its history");

    // The history has the running release, numbered as the agent numbers it.
    let releases = history(&project, "iris");
    assert_eq!(releases.len(), 1, "{releases:#?}");
    let r = &releases[0];
    assert_eq!(r["number"], 2);
    assert_eq!(r["ref"], "v2");
    assert_eq!(r["commit"], v2.as_str());
    assert_eq!(r["packages_hash"], running["packages_hash"]);
    assert_eq!(r["result"], "ok");
    assert_eq!(r["current"], true);
    assert_eq!(r["agents"][agent.address()]["release"], 2, "{r:#}");
    project
        .deployctl(&["history", "iris"])
        .ok()
        .mentions("found running by status --refresh");

    // Nothing before it is known: rollback says so and what to do instead.
    project
        .deployctl(&["rollback", "iris"])
        .expect_code(1)
        .mentions("its history starts at release 2")
        .mentions("status --refresh")
        .mentions("deployctl run iris --ref REF");

    // env set and restart work on the running deployment.
    project
        .deployctl(&["env", "set", "iris", "MODE=fast"])
        .ok()
        .mentions("same commit");
    let (_, dep) = project.status_json("iris");
    assert_eq!(dep["instances"][0]["release"], 3, "{dep:#}");
    assert_eq!(dep["instances"][0]["commit"], v2.as_str());
    let numbers: Vec<u64> = history(&project, "iris")
        .iter()
        .filter_map(|h| h["number"].as_u64())
        .collect();
    assert_eq!(numbers, [2, 3]);
    // A refresh when the history has what runs adds nothing.
    let out = project.deployctl(&["status", "--refresh"]);
    out.ok().mentions("0 deployment(s) added, 1 updated");
    assert!(!out.stdout.contains("recorded in its history"), "{out}");
    assert_eq!(history(&project, "iris").len(), 2);
    project.deployctl(&["restart", "iris"]).ok();

    // Back to the release the refresh found: it is known now.
    project
        .deployctl(&["rollback", "iris"])
        .ok()
        .mentions("back to release 2");
    let (_, dep) = project.status_json("iris");
    assert_eq!(dep["instances"][0]["release"], 4, "{dep:#}");
    assert_eq!(dep["instances"][0]["state"], "healthy");
    // Before the refresh: not known, said so (not "no release 1").
    project
        .deployctl(&["rollback", "iris", "--to", "1"])
        .expect_code(2)
        .mentions("release 1 is from before")
        .mentions("deployctl run iris --ref REF");
}
