//! `status --refresh` after the state was lost: as `state rebuild`, the history gets every
//! release the agent keeps (its release number, ref, commit, packages hash), so `env set`,
//! `restart` and `rollback` work.

use deployctl_e2e::*;

#[test]
fn a_refreshed_state_has_every_release_the_agent_keeps() {
    let (_ip, agent, project, repo) = iris_deployed();
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
        .mentions("iris: 2 releases from 1 agent, current 2");

    // The history has every release the agent keeps, numbered as the agent numbers them.
    let releases = project.history("iris");
    assert_eq!(releases.len(), 2, "{releases:#?}");
    let r = &releases[1];
    assert_eq!(r["number"], 2);
    assert_eq!(r["ref"], "v2");
    assert_eq!(r["commit"], v2.as_str());
    assert_eq!(r["packages_hash"], running["packages_hash"]);
    assert_eq!(r["result"], "ok");
    assert_eq!(r["current"], true);
    assert_eq!(r["agents"][agent.address()]["release"], 2, "{r:#}");
    assert_eq!(releases[0]["ref"], "v1");
    assert_eq!(releases[0]["current"], false);
    project
        .deployctl(&["history", "iris"])
        .ok()
        .mentions("rebuilt from the agents' records");

    // env set and restart work on the running deployment.
    project
        .deployctl(&["env", "set", "iris", "MODE=fast"])
        .ok()
        .mentions("same commit");
    let (_, dep) = project.status_json("iris");
    assert_eq!(dep["instances"][0]["release"], 3, "{dep:#}");
    assert_eq!(dep["instances"][0]["commit"], v2.as_str());
    let numbers: Vec<u64> = project
        .history("iris")
        .iter()
        .filter_map(|h| h["number"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    // A refresh when the history has what the agent keeps adds nothing.
    project
        .deployctl(&["status", "--refresh"])
        .ok()
        .mentions("0 deployment(s) added, 1 updated")
        .mentions("iris: the state has every release its 1 agent keep");
    assert_eq!(project.history("iris").len(), 3);
    project.deployctl(&["restart", "iris"]).ok();

    // Back to the release before: it is known, with its declaration as deployed.
    project
        .deployctl(&["rollback", "iris", "--to", "1"])
        .ok()
        .mentions("back to release 1");
    let (_, dep) = project.status_json("iris");
    assert_eq!(dep["instances"][0]["release"], 4, "{dep:#}");
    assert_eq!(dep["instances"][0]["ref"], "v1", "{dep:#}");
    assert_eq!(dep["instances"][0]["state"], "healthy");
}
