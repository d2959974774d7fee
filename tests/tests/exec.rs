//! `exec NAME -- CMD`: a one-off command in the deployed release's checkout, workdir,
//! environment, env vars and secrets; output streamed, exit code passed through; for the
//! deployment's owner only.

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// `deployctl exec` with `input` on its standard input.
fn exec_with_stdin(project: &Project, args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(deployctl_bin())
        .arg("--project")
        .arg(project.path())
        .arg("exec")
        .args(args)
        .current_dir(project.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exec_runs_in_the_release_with_its_env_and_secrets_and_passes_the_exit_code() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("exec", Some("v1"));
    repo.write("data.txt", "from the checkout\n");
    repo.commit("data");
    project.write("token", "s3cr3t-t0ken\n");
    project
        .deployctl(&["secret", "set", "API_TOKEN", "--from-file", "token"])
        .ok();
    project
        .run_app(
            ENV,
            "svc",
            &repo.url(),
            "main",
            &["--env-var", "GREETING=hello", "--secret", "API_TOKEN"],
        )
        .ok();

    let script = "import os, sys; print(os.environ['GREETING'], open('data.txt').read().strip()); \
                  print('token', os.environ['API_TOKEN']); print('to stderr', file=sys.stderr); sys.exit(3)";
    let out = project.deployctl(&["exec", "svc", "--", "python3", "-c", script]);
    out.expect_code(3)
        .mentions("hello from the checkout")
        .mentions("token [redacted]");
    assert!(out.stderr.contains("to stderr"), "{out}");
    assert!(!out.all().contains("s3cr3t"), "the secret leaked\n{out}");

    // -i: standard input reaches the command.
    let (code, stdout, stderr) = exec_with_stdin(
        &project,
        &[
            "svc",
            "-i",
            "--",
            "python3",
            "-c",
            "import sys; print(sys.stdin.read().upper())",
        ],
        "forwarded input\n",
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("FORWARDED INPUT"), "{stdout}{stderr}");

    // A program that does not exist: 127, as a shell says; an unknown deployment: 1.
    project
        .deployctl(&["exec", "svc", "--", "no-such-program"])
        .expect_code(127)
        .mentions("no-such-program: not found");
    project
        .deployctl(&["exec", "nope", "--", "true"])
        .expect_code(1)
        .mentions("\"nope\" not found");
    project
        .deployctl(&["exec", "svc", "--agent", "10.9.9.9:7070", "--", "true"])
        .expect_code(2)
        .mentions("--agent");
}

#[test]
fn exec_is_for_the_owner_only() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[], "");
    let (alice, bob) = (s.project_as(Some("alice")), s.project_as(Some("bob")));
    let repo = GitRepo::new();
    repo.commit_app("owned", Some("v1"));
    alice.run_app("e2e", "ledger", &repo.url(), "v1", &[]).ok();
    alice.deployctl(&["exec", "ledger", "--", "true"]).ok();
    // bob learns nothing: to him it does not exist.
    bob.write("ledger.deploy.yaml", &alice.read("ledger.deploy.yaml"));
    let out = bob.deployctl(&["exec", "ledger", "--", "id"]);
    out.expect_code(1).mentions("not found");
    assert!(!out.stdout.contains("uid="), "{out}");
}
