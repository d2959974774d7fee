//! Bad input exits 2 with a message naming the field, and changes nothing.

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn bad_name_exits_2() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("x", Some("v1"));
    for bad in ["../x", "has space", ""] {
        let out = project.deployctl(&[
            "run",
            bad,
            "--env",
            ENV,
            "--repo",
            &repo.url(),
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
        ]);
        out.expect_code(2).mentions("name");
    }
    assert!(
        !project
            .path()
            .parent()
            .unwrap()
            .join("x.deploy.yaml")
            .exists(),
        "../x must not be written"
    );
    assert!(agent.app_pids().is_empty());
}

#[test]
fn port_out_of_range_exits_2() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("x", Some("v1"));
    let out = project.deployctl(&[
        "run",
        "toobig",
        "--env",
        ENV,
        "--repo",
        &repo.url(),
        "--ref",
        "v1",
        "--command",
        "python3 app.py",
        "--port",
        "70000",
    ]);
    out.expect_code(2).mentions("port");
    assert!(agent.app_pids().is_empty());
    assert_eq!(project.deployctl(&["status", "toobig"]).code, 1);

    // An env that is not declared is bad input too.
    let out = project.deployctl(&[
        "run",
        "noenv",
        "--env",
        "nowhere",
        "--repo",
        &repo.url(),
        "--ref",
        "v1",
        "--command",
        "python3 app.py",
    ]);
    out.expect_code(2).mentions("nowhere");
}

#[test]
fn unknown_field_in_declaration_exits_2() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("x", Some("v1"));
    project.write(
        "typo.deploy.yaml",
        &format!(
            "object_type: deployment\ntype: process\nenv: {ENV}\nrepo: {}\nref: v1\ncommand: python3 app.py\ncomand_typo: oops\n",
            repo.url()
        ),
    );
    let out = project.deployctl(&["run", "--load", "typo"]);
    out.expect_code(2).mentions("comand_typo");
    assert!(agent.app_pids().is_empty());
    assert!(
        agent.record("typo").is_none(),
        "nothing should reach the agent"
    );
}
