//! The shared state obeys owners: three users share one state (a file, and etcd) as a team
//! does; the agents answer "not found" for another owner's deployment, and the CLI never
//! takes that for "not running" — it neither erases another owner's entry nor shows it as
//! missing.

use deployctl_e2e::*;

/// Three users' projects on one agent and one shared state (`uri`).
fn team(s: &Secure, uri: &str) -> Vec<Project> {
    ["alice", "bob", "carol"]
        .iter()
        .map(|u| {
            let p = s.project_as(Some(u));
            p.write(
                ".deployctl.yaml",
                &format!("core:\n  default_env: e2e\n  state:\n    uri: {uri}\n"),
            );
            p
        })
        .collect()
}

fn check(s: &Secure, team: &[Project], repo: &GitRepo) {
    let (alice, bob, carol) = (&team[0], &team[1], &team[2]);
    alice
        .run_app(
            "e2e",
            "iris-team",
            &repo.url(),
            "v1",
            &["--owner", "group:ml"],
        )
        .ok();
    let entry_is_there = |p: &Project| {
        let (out, v) = p.status_json("iris-team");
        (out.code, v)
    };
    // Carol is not in group ml: her remove is refused naming the owner, nothing changes.
    carol
        .deployctl(&["remove", "iris-team"])
        .expect_code(1)
        .mentions("belongs to group:ml")
        .mentions("user:carol")
        .mentions("nothing was changed");
    let (code, v) = entry_is_there(bob);
    assert_eq!(code, 0, "still running, still in the shared state: {v}");
    assert_eq!(v["instances"][0]["state"], "healthy", "{v}");
    let history = bob.deployctl(&["history", "iris-team"]);
    history.ok().mentions("v1");

    // Carol's status: not visible to her, with its owner; never "missing".
    let all = carol.deployctl(&["status"]);
    all.mentions("not visible to you (owner group:ml)");
    assert!(!all.all().contains("missing"), "{}", all.all());
    let one = carol.deployctl(&["status", "iris-team"]);
    one.expect_code(1)
        .mentions("not visible to you (owner group:ml)");

    // A member of the group removes it: gone from the agent and the state.
    bob.deployctl(&["remove", "iris-team"]).ok();
    assert!(s.agent.record("iris-team").is_none());
    bob.deployctl(&["status", "iris-team"]).expect_code(1);
}

#[test]
fn another_owners_entry_in_a_shared_file_state_is_neither_erased_nor_missing() {
    let ip = loopback();
    let s = secure_agent(
        &ip,
        &["alice", "bob", "carol"],
        &[("ml", &["alice", "bob"])],
        "",
    );
    let shared = shared_dir();
    let uri = shared.path().join("state.json");
    let team = team(&s, &uri.to_string_lossy());
    let repo = GitRepo::new();
    repo.commit_app("team", Some("v1"));
    check(&s, &team, &repo);
}

#[test]
fn another_owners_entry_in_a_shared_etcd_state_is_neither_erased_nor_missing() {
    let (ip, etcd_ip) = (loopback(), loopback());
    let etcd = Etcd::start(&etcd_ip);
    let s = secure_agent(
        &ip,
        &["alice", "bob", "carol"],
        &[("ml", &["alice", "bob"])],
        "",
    );
    let team = team(&s, &format!("etcd://{}/team", etcd.client));
    let repo = GitRepo::new();
    repo.commit_app("team", Some("v1"));
    check(&s, &team, &repo);
}
