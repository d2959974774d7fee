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

/// Errors a user caused are printed with their causes, never with a stack backtrace, even
/// with RUST_BACKTRACE=1 (common on Rust developers' machines).
#[test]
fn errors_never_print_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let ip = loopback();
    for backtrace in ["1", "full"] {
        // A refused start of the agent: reachable from other machines without TLS.
        let out = std::process::Command::new(agent_bin())
            .args(["--listen", "0.0.0.0:0", "--http-listen", &format!("{ip}:0")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_BACKTRACE", backtrace)
            .env("RUST_LIB_BACKTRACE", backtrace)
            .output()
            .expect("running deploy-agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("error: refusing to listen on 0.0.0.0"),
            "{err}"
        );
        assert!(!err.to_lowercase().contains("backtrace"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");

        // A config file the agent cannot read: the cause is named too.
        let out = std::process::Command::new(agent_bin())
            .arg("--config")
            .arg(dir.path().join("missing.toml"))
            .env("RUST_BACKTRACE", backtrace)
            .env("RUST_LIB_BACKTRACE", backtrace)
            .output()
            .expect("running deploy-agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("missing.toml"), "{err}");
        assert!(!err.to_lowercase().contains("backtrace"), "{err}");

        // deployctl: bad input (exit 2) and a failed operation (exit 1).
        for (args, code) in [
            (&["run", "../x", "--repo", "/nowhere"][..], 2),
            (
                &[
                    "declare",
                    "env",
                    "agent",
                    "prod",
                    "--address",
                    "http://127.0.0.1:1",
                ][..],
                0,
            ),
            (&["nodes", "--env", "prod"][..], 1),
        ] {
            let out = std::process::Command::new(deployctl_bin())
                .arg("--project")
                .arg(dir.path())
                .args(args)
                .env("RUST_BACKTRACE", backtrace)
                .env("RUST_LIB_BACKTRACE", backtrace)
                .output()
                .expect("running deployctl");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
            assert!(!err.to_lowercase().contains("backtrace"), "{args:?}: {err}");
        }
    }
}

#[test]
fn variables_the_agent_sets_are_refused_naming_why_and_nothing_changes() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("vars", Some("v1"));
    project.run_app(ENV, "vars", &repo.url(), "v1", &[]).ok();
    let declared = project.read("vars.deploy.yaml");
    for (var, why) in [
        ("PATH=/opt/x/bin", "PATH=/opt/tool/bin:$PATH"),
        ("DEPLOY_INSTANCE=mine", "every process of an instance"),
        ("DATA_DIR=/srv", "own directory"),
        ("PORT=9000", "$HOST:$PORT"),
    ] {
        project
            .deployctl(&["env", "set", "vars", var])
            .expect_code(2)
            .mentions(&format!(
                "env_vars.{}",
                var.split('=').next().unwrap_or_default()
            ))
            .mentions(why);
        assert_eq!(
            project.read("vars.deploy.yaml"),
            declared,
            "the declaration is unchanged"
        );
    }
    let (out, v) = project.status_json("vars");
    out.ok();
    assert_eq!(v["instances"][0]["release"], 1, "no release was added: {v}");
}
