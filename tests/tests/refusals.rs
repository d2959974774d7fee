//! What a refusal tells, and to whom: another owner's deployment is never named to a user
//! who may not see it (its name, its port, the number of deployments on the node), and a
//! refused token is written to the agent's log with where it came from, rate-limited.

use std::time::Duration;

use deployctl_e2e::*;

fn deploy(p: &Project, repo: &GitRepo, name: &str, port: &str) -> Output {
    p.deployctl(&[
        "run",
        name,
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
        "--port",
        port,
    ])
}

/// The deployments `deployctl nodes` counts for this project's caller.
fn counted(p: &Project) -> u64 {
    let out = p.deployctl(&["nodes", "--output", "json"]);
    out.ok();
    out.json()["nodes"][0]["deployments"]
        .as_u64()
        .unwrap_or_else(|| panic!("no deployment count\n{out}"))
}

/// `out` names neither alice nor her deployment, nor that someone else has it.
fn reveals_nothing(out: &Output, what: &str) {
    let text = out.all();
    for secret in ["alice", "ledger", "someone else"] {
        assert!(!text.contains(secret), "{what} reveals {secret:?}\n{out}");
    }
}

#[test]
fn refusals_do_not_reveal_other_owners_deployments() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[], "");
    let (alice, bob, admin) = (
        s.project_as(Some("alice")),
        s.project_as(Some("bob")),
        s.project_as(Some("admin")),
    );
    let repo = GitRepo::new();
    repo.commit_app("alices", None);
    deploy(&alice, &repo, "ledger", "8001").ok();

    // bob asks for alice's name: it is not available, and that is all he learns.
    let out = bob.deployctl(&[
        "run",
        "ledger",
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--port",
        "8002",
    ]);
    out.expect_code(1).mentions("not available");
    let text = out.all();
    assert!(
        !text.contains("alice") && !text.contains("someone else"),
        "{out}"
    );
    for args in [
        &["status", "ledger"][..],
        &["logs", "ledger"],
        &["remove", "ledger"],
        &["apply", "ledger", "{}"],
    ] {
        let out = bob.deployctl(args);
        out.expect_code(1).mentions("not found");
        let text = out.all();
        assert!(!text.contains("alice"), "{args:?}\n{out}");
    }

    // bob asks for the port alice's deployment holds: in use, but not by whom.
    let out = deploy(&bob, &repo, "mine", "8001");
    out.expect_code(1)
        .mentions("port 8001 is in use on this node");
    reveals_nothing(&out, "the port refusal");
    // alice is told which of her own deployments has it.
    deploy(&alice, &repo, "books", "8001")
        .expect_code(1)
        .mentions("port 8001 is in use on this node by user:alice's deployment \"ledger\"");

    // `nodes` counts what the caller may see; an admin sees everything.
    deploy(&bob, &repo, "mine", "8002").ok();
    assert_eq!(counted(&bob), 1);
    assert_eq!(counted(&alice), 1);
    assert_eq!(counted(&admin), 2);
    // Alice's app served throughout.
    assert_eq!(
        wait_for_json(&s.agent.app_url(8001, "/"), Duration::from_secs(5))["marker"],
        "alices"
    );
}

/// The agent's log lines about refused requests.
fn refusal_lines(agent: &Agent) -> Vec<String> {
    strip_ansi(&agent.stderr())
        .lines()
        .filter(|l| l.contains("refused a request"))
        .map(str::to_string)
        .collect()
}

/// The `suppressed=N` field of a log line.
fn suppressed(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("suppressed="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no suppressed= in {line:?}"))
}

#[test]
fn refused_tokens_are_logged_rate_limited() {
    let ip = loopback();
    let s = secure_agent(&ip, &[], &[], "");
    // A real user's token that expires soon: its refusal names the user.
    let out = agent_admin(
        &s.agent.data_dir,
        &["user", "add", "brief", "--expires", "1s"],
    );
    let brief = s.project_with_token(&token_in(&out));
    let wrong = s.project_with_token("dat_not-a-token-of-this-agent");

    wrong
        .deployctl(&["nodes"])
        .expect_code(1)
        .mentions("refused");
    assert!(
        wait_until(Duration::from_secs(5), || !refusal_lines(&s.agent)
            .is_empty()),
        "a refused token should be logged\n{}",
        s.agent.stderr()
    );
    let first = refusal_lines(&s.agent)[0].clone();
    assert!(first.contains("WARN"), "{first}");
    assert!(first.contains("/deploy.v1.Agent/NodeInfo"), "{first}");
    let peer = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .unwrap_or_else(|| panic!("no peer= in {first:?}"));
    assert!(
        peer.parse::<std::net::SocketAddr>().is_ok(),
        "the peer address in {first:?}"
    );

    // A client hammering with a wrong token: a few lines, not one per attempt.
    let started = std::time::Instant::now();
    for _ in 0..50 {
        wrong.deployctl(&["nodes"]).expect_code(1);
    }
    let windows = started.elapsed().as_secs() / 10 + 2;
    let lines = refusal_lines(&s.agent);
    assert!(
        (lines.len() as u64) <= windows,
        "51 refusals in {:?} made {} log lines\n{}",
        started.elapsed(),
        lines.len(),
        lines.join("\n")
    );
    // Good tokens still work.
    s.project_as(Some("admin")).deployctl(&["nodes"]).ok();

    // Once the window is over, the expired token's refusal is written, naming its user and
    // how many refusals were left out.
    let mut last = Vec::new();
    let named = wait_until(Duration::from_secs(30), || {
        brief.deployctl(&["nodes"]).expect_code(1);
        last = refusal_lines(&s.agent);
        last.iter().any(|l| l.contains("user=\"brief\""))
    });
    assert!(named, "no line names the expired user\n{}", last.join("\n"));
    let total: u64 = last.iter().map(|l| suppressed(l) + 1).sum();
    assert!(
        total >= 52,
        "every refusal is accounted for ({total})\n{}",
        last.join("\n")
    );
}
