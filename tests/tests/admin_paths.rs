//! The admin commands (`init`, `user`, `group`) change the running agent's files, found as
//! the agent finds them: `--data-dir`, else `--config FILE`'s `data_dir` (and `auth_file`),
//! else the system config (here redirected with `DEPLOY_AGENT_SYSTEM_CONFIG`, never the real
//! /etc/deploy-agent), else `STATE_DIRECTORY` (standing in for the default data directory).
//! Each names the file it changed; two different candidates without a flag are refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use deployctl_e2e::*;

/// `deploy-agent ARGS...` with the system config at `system` and the default data
/// directory at `state`, and no `DEPLOY_AGENT_*` settings from the test's environment.
fn admin(system: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(agent_bin())
        .args(args)
        .env_remove("DEPLOY_AGENT_DATA_DIR")
        .env_remove("DEPLOY_AGENT_CONFIG")
        .env_remove("SUDO_USER")
        .env("DEPLOY_AGENT_SYSTEM_CONFIG", system)
        .env("STATE_DIRECTORY", state)
        .stdin(Stdio::null())
        .output()
        .expect("running deploy-agent")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn users_in(auth: &Path) -> String {
    std::fs::read_to_string(auth).unwrap_or_default()
}

#[test]
fn admin_commands_change_the_configured_agents_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("data"), tmp.path().join("state"));
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let no_system = tmp.path().join("no-such-config.toml");

    // --config FILE: its data_dir.
    let out = admin(
        &no_system,
        &state,
        &["--config", config.to_str().unwrap(), "user", "add", "alice"],
    );
    let auth = data.join("auth.toml");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("added user alice to {}", auth.display())),
        "the output names the file: {}",
        text(&out)
    );
    assert!(users_in(&auth).contains("alice"), "{}", users_in(&auth));
    assert!(!state.join("auth.toml").exists(), "nothing in the default");

    // No flag, the system config exists: its data_dir; `init`'s hints work as printed.
    let out = admin(&config, &state, &["init", "--name", "127.0.0.1"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&format!("to {}", auth.display())), "{said}");
    assert!(
        said.contains("install -D -m 600") && said.contains("More users: deploy-agent user add"),
        "{said}"
    );
    let out = admin(&config, &state, &["user", "add", "bob"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = admin(&config, &state, &["user", "list"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("users and groups in {}", auth.display()))
            && said.contains("user alice")
            && said.contains("user bob")
            && said.contains("user admin (admin)"),
        "{said}"
    );

    // auth_file in the config is honoured.
    let other = tmp.path().join("elsewhere/auth.toml");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nauth_file = {:?}\n",
            data.display().to_string(),
            other.display().to_string()
        ),
    )
    .unwrap();
    let out = admin(&config, &state, &["group", "add", "ml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&other.display().to_string()),
        "{}",
        text(&out)
    );
    assert!(users_in(&other).contains("ml"), "{}", users_in(&other));
    assert!(!users_in(&auth).contains("ml"));
}

#[test]
fn admin_commands_refuse_to_guess_between_two_auth_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, state) = (tmp.path().join("data"), tmp.path().join("state"));
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    for (dir, user) in [(&data, "alice"), (&state, "bob")] {
        let d = dir.to_str().unwrap();
        let out = admin(&config, &state, &["--data-dir", d, "user", "add", user]);
        assert!(out.status.success(), "{}", text(&out));
    }

    for args in [&["user", "list"][..], &["user", "add", "carol"], &["init"]] {
        let out = admin(&config, &state, args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(
            said.contains(&data.join("auth.toml").display().to_string())
                && said.contains(&state.join("auth.toml").display().to_string()),
            "the refusal names both files: {said}"
        );
    }
    assert!(!users_in(&data.join("auth.toml")).contains("carol"));
    assert!(!users_in(&state.join("auth.toml")).contains("carol"));

    // A flag settles it.
    let out = admin(
        &config,
        &state,
        &["--config", config.to_str().unwrap(), "user", "list"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("user alice"), "{}", text(&out));
}
