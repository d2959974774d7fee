//! Secrets say where they went, and a deploy that lacks one prints the command that sets
//! it where that deploy looks (its owner, its env), which works as printed.

use std::io::Write;
use std::process::{Command, Stdio};

use deployctl_e2e::*;

/// A command printed between backticks, run as printed (split on spaces: the hint has no
/// quoting) with `stdin` on standard input.
fn run_printed(p: &Project, command: &str, stdin: &str) -> (i32, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "deployctl", "{command}");
    let mut child = Command::new(deployctl_bin())
        .args(&words[1..])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "$ {command}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn secret_commands_name_env_and_agent_and_the_missing_secret_hint_works_as_printed() {
    // Two agents: the project's default env `e2e` and env `team`, so a hint that forgot
    // the env would set the secret on the wrong agent.
    let (ip_a, ip_b) = (loopback(), loopback());
    let a = secure_agent(&ip_a, &["alice"], &[("ml", &["alice"])], "");
    let b = secure_agent(&ip_b, &["alice"], &[("ml", &["alice"])], "");
    let p = a.project_as(Some("alice"));
    b.declare(&p, "team", Some(&b.tokens["alice"]));
    let agent_a = format!("https://{}", a.agent.grpc);
    let agent_b = format!("https://{}", b.agent.grpc);

    p.write("password.txt", "s3cret\n");
    let set = p.deployctl(&[
        "secret",
        "set",
        "--owner",
        "group:ml",
        "DB_PASSWORD",
        "--from-file",
        "password.txt",
    ]);
    set.ok().mentions(&format!(
        "secret DB_PASSWORD set for group:ml on env e2e (agent {agent_a})"
    ));
    p.deployctl(&["secret", "list", "--owner", "group:ml"])
        .ok()
        .mentions(&format!("Secrets of group:ml on env e2e (agent {agent_a})"))
        .mentions("DB_PASSWORD");
    p.deployctl(&["secret", "list", "--owner", "group:ml", "--env", "team"])
        .ok()
        .mentions(&format!(
            "group:ml has no secrets on env team (agent {agent_b})"
        ));

    // Deployed as alice (no --owner) to env team: alice has no DB_PASSWORD there.
    let repo = GitRepo::new();
    repo.commit_app("hints", Some("v1"));
    let deploy = || {
        p.run_app(
            "team",
            "db",
            &repo.url(),
            "v1",
            &["--secret", "DB_PASSWORD"],
        )
    };
    let failed = deploy();
    failed
        .expect_code(1)
        .mentions("user:alice has no secret DB_PASSWORD");
    let all = failed.all();
    let hint = all
        .split('`')
        .find(|s| s.starts_with("deployctl secret set"))
        .unwrap_or_else(|| panic!("no `deployctl secret set` hint\n{failed}"));
    assert_eq!(
        hint, "deployctl secret set --env team --owner user:alice DB_PASSWORD",
        "{failed}"
    );
    let (code, text) = run_printed(&p, hint, "s3cret\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "secret DB_PASSWORD set for user:alice on env team (agent {agent_b})"
        )),
        "{text}"
    );

    deploy().ok().mentions("is live at");

    p.deployctl(&["remove", "db"]).ok();
    p.deployctl(&["secret", "rm", "--owner", "group:ml", "DB_PASSWORD"])
        .ok()
        .mentions(&format!(
            "secret DB_PASSWORD of group:ml removed from env e2e (agent {agent_a})"
        ));
}
