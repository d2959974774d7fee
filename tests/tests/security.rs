//! Safe for a team: TLS and bearer tokens, users and groups owning deployments, secrets
//! that reach the app and nothing else, a private repository over real HTTP with basic
//! auth, cloning to a group, and an agent that refuses to be exposed.

use std::process::Command;
use std::time::Duration;

use deployctl_e2e::*;

fn deploy(p: &Project, repo: &GitRepo, name: &str, extra: &[&str]) -> Output {
    let url = repo.url();
    let mut args = vec![
        "run",
        name,
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
    ];
    args.extend_from_slice(extra);
    p.deployctl(&args)
}

#[test]
fn tokens_are_required_checked_and_revocable() {
    let ip = loopback();
    let s = secure_agent(&ip, &["temp"], &[], "");
    let none = s.project_as(None);
    none.deployctl(&["nodes"])
        .expect_code(1)
        .mentions("requires a token");
    let wrong = s.project_as(Some("dat_not-a-real-token"));
    wrong
        .deployctl(&["nodes"])
        .expect_code(1)
        .mentions("refused");
    s.project_as(Some("admin")).deployctl(&["nodes"]).ok();

    // A removed user's token stops working (the agent reloads its users).
    let temp = s.project_as(Some("temp"));
    temp.deployctl(&["nodes"]).ok();
    agent_admin(&s.agent.data_dir, &["user", "rm", "temp"]);
    assert!(
        wait_until(Duration::from_secs(10), || temp.deployctl(&["nodes"]).code
            == 1),
        "the removed user's token should be refused"
    );
    // An expired token is refused too.
    let out = agent_admin(
        &s.agent.data_dir,
        &["user", "add", "brief", "--expires", "2s"],
    );
    let brief = s.project_with_token(&token_in(&out));
    assert!(
        wait_until(Duration::from_secs(15), || brief.deployctl(&["nodes"]).code
            == 1),
        "an expired token should be refused"
    );
    // The token is stored only as a hash.
    let auth = std::fs::read_to_string(s.agent.data_dir.join("auth.toml")).unwrap();
    assert!(!auth.contains(&s.tokens["admin"]), "{auth}");
    // Plain HTTP to the TLS port does not get through.
    let plain = Project::new();
    plain
        .deployctl(&[
            "declare",
            "env",
            "agent",
            "e2e",
            "--address",
            &s.agent.address(),
        ])
        .ok();
    plain.deployctl(&["nodes", "--env", "e2e"]).expect_code(1);
}

#[test]
fn the_agent_refuses_an_open_port_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(agent_bin())
        .args([
            "--listen",
            "0.0.0.0:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing to listen on 0.0.0.0") && err.contains("init"),
        "{err}"
    );
}

#[test]
fn a_group_owns_its_deployments() {
    let ip = loopback();
    let s = secure_agent(
        &ip,
        &["alice", "bob", "carol"],
        &[("ml", &["alice", "bob"])],
        "",
    );
    let (alice, bob, carol, admin) = (
        s.project_as(Some("alice")),
        s.project_as(Some("bob")),
        s.project_as(Some("carol")),
        s.project_as(Some("admin")),
    );
    let repo = GitRepo::new();
    repo.commit_app("team", None);
    deploy(&alice, &repo, "shared", &["--owner", "group:ml"]).ok();
    // Without a declared owner, the caller owns it.
    deploy(&alice, &repo, "mine", &["--port", "8001"]).ok();
    let (_, dep) = alice.status_json("mine");
    assert_eq!(dep["owner"], "user:alice", "{dep:#}");

    // A member of the group sees and manages it.
    let (out, dep) = bob.status_json("shared");
    out.ok();
    assert_eq!(dep["owner"], "group:ml");
    bob.deployctl(&["logs", "shared", "-n", "5"])
        .ok()
        .mentions("app team listening");
    bob.deployctl(&["status", "mine"])
        .expect_code(1)
        .mentions("not found");

    // Someone else: not found, never its details; cannot remove or take it over.
    let out = carol.deployctl(&["status", "shared"]);
    out.expect_code(1).mentions("not found");
    assert!(!out.all().contains(&format!("{ip}:8000")), "{out}");
    carol
        .deployctl(&["logs", "shared"])
        .expect_code(1)
        .mentions("not found");
    carol.deployctl(&["remove", "shared"]).expect_code(1);
    deploy(&carol, &repo, "shared", &["--owner", "group:ml"])
        .expect_code(1)
        .mentions("permission denied");
    deploy(&carol, &repo, "shared", &["--port", "8002"])
        .expect_code(1)
        .mentions("permission denied");
    let listed = carol.deployctl(&["status", "--output", "json"]);
    assert!(!listed.stdout.contains("shared"), "{listed}");
    // Still serving after all that.
    assert_eq!(
        wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(5))["marker"],
        "team"
    );
    // alice may not deploy in bob's name.
    deploy(
        &alice,
        &repo,
        "forged",
        &["--owner", "user:bob", "--port", "8003"],
    )
    .expect_code(1)
    .mentions("permission denied");

    // The admin sees everything and may remove it.
    admin.deployctl(&["status", "shared"]).ok();
    admin.deployctl(&["remove", "shared"]).ok();
}
