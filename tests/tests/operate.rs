//! Operating a deployment without deploying: `restart` (a new process of the same release,
//! no failed request under load), `stop` (status says stopped, an agent restart does not
//! start it) and `start`.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

fn served(agent: &Agent) -> serde_json::Value {
    wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(20))
}

#[test]
fn restart_stop_and_start_keep_the_release() {
    let ip = loopback();
    let mut agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let commit = repo.commit_app("same", Some("v1"));
    project
        .run_app(
            ENV,
            "svc",
            &repo.url(),
            "v1",
            &["--env-var", "APP_SLOW_START=0.5"],
        )
        .ok();
    let before = served(&agent);

    // restart: a new process of release 1, and not one request fails meanwhile.
    let load = Load::start(&agent.app_url(8000, "/"));
    load.wait_for(20);
    let out = project.deployctl(&["restart", "svc"]);
    out.ok().mentions("Restarting svc").mentions("release 1");
    let seen = load.finish();
    assert!(
        seen.failed.is_empty(),
        "requests failed during the restart: {:?}",
        seen.failed
    );
    let after = served(&agent);
    assert_ne!(after["pid"], before["pid"], "not a new process");
    assert_eq!(after["release"], "1", "{after}");
    assert_eq!(after["commit"], commit.as_str(), "{after}");
    let history = project.deployctl(&["history", "svc", "--output", "json"]);
    history.ok();
    assert!(
        !history.stdout.contains("\"release\":2"),
        "a restart made a release\n{history}"
    );

    // stop: nothing answers, status says stopped (exit 1: not healthy), the release stays.
    let pid = after["pid"].as_u64().unwrap() as u32;
    project
        .deployctl(&["stop", "svc"])
        .ok()
        .mentions("stopped svc on");
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "the app still runs"
    );
    assert!(http_get(&agent.app_url(8000, "/health")).is_none_or(|(code, _)| code != 200));
    let (status, v) = project.status_json("svc");
    status.expect_code(1);
    assert_eq!(v["instances"][0]["state"], "stopped", "{status}");
    project
        .deployctl(&["status", "svc"])
        .mentions("deployctl start");

    // It stays stopped when the agent restarts (as after a reboot).
    agent.kill9();
    agent.restart();
    let (status, v) = project.status_json("svc");
    status.expect_code(1);
    assert_eq!(v["instances"][0]["state"], "stopped", "{status}");
    assert!(http_get(&agent.app_url(8000, "/health")).is_none_or(|(code, _)| code != 200));

    // start: the same release again, healthy; a second start changes nothing.
    project
        .deployctl(&["start", "svc"])
        .ok()
        .mentions("release 1");
    let started = served(&agent);
    assert_eq!(started["release"], "1");
    assert_eq!(started["commit"], commit.as_str());
    project
        .deployctl(&["start", "svc"])
        .ok()
        .mentions("running already");
    assert_eq!(served(&agent)["pid"], started["pid"]);
    let (status, v) = project.status_json("svc");
    status.ok();
    assert_eq!(v["instances"][0]["state"], "healthy", "{status}");

    // Unknown names are refused, naming them.
    project
        .deployctl(&["restart", "nope"])
        .expect_code(1)
        .mentions("\"nope\" not found");
}

/// The history entries of `history NAME --output json`.
fn history(project: &Project, name: &str) -> Vec<serde_json::Value> {
    let out = project.deployctl(&["history", name, "--output", "json"]);
    out.ok();
    out.json()["releases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn env_set_keeps_code_and_environment_and_rollback_keeps_its_ref() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let one = repo.commit_app("one", Some("v1.0.0"));
    repo.commit_app("two", Some("v2.0.0"));
    let shared = shared_dir();
    let greeting = shared.path().join("greeting.txt");
    std::fs::write(&greeting, "hello from env set\n").unwrap();
    project
        .run_app(
            ENV,
            "svc",
            &repo.url(),
            "v1.0.0",
            &["--pip", "six==1.16.0", "--env-var", "APP_IMPORT=six"],
        )
        .ok();
    let first = served(&agent);
    assert!(first["file"].is_null());

    // env set: the app has the new variable; same commit, same packages, a history entry.
    project
        .deployctl(&[
            "env",
            "set",
            "svc",
            &format!("APP_FILE={}", greeting.display()),
        ])
        .ok()
        .mentions("same commit");
    let after = served(&agent);
    assert_eq!(after["file"], "hello from env set", "{after}");
    assert_eq!(after["commit"], one.as_str());
    assert_eq!(after["module_version"], "1.16.0");
    let h = history(&project, "svc");
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[1]["note"], "env set APP_FILE");
    assert_eq!(h[1]["ref"], "v1.0.0", "the ref, not the commit");
    assert_eq!(
        h[1]["packages_hash"], h[0]["packages_hash"],
        "not the same environment"
    );
    assert!(project.read("svc.deploy.yaml").contains("APP_FILE"));

    // env unset, and an unset of what is not set (bad input, nothing changes).
    project
        .deployctl(&["env", "unset", "svc", "NOPE"])
        .expect_code(2)
        .mentions("NOPE is not set on svc");
    project.deployctl(&["env", "unset", "svc", "APP_FILE"]).ok();
    assert!(served(&agent)["file"].is_null());
    assert!(!project.read("svc.deploy.yaml").contains("APP_FILE"));
    assert_eq!(history(&project, "svc").len(), 3);

    // Forward to v2.0.0, then back: the rollback is known by its ref and says what it is,
    // and what a later `run --load` would do; that run warns, and goes forward.
    project.deployctl(&["run", "svc", "--ref", "v2.0.0"]).ok();
    assert_eq!(served(&agent)["marker"], "two");
    project
        .deployctl(&["rollback", "svc", "--to", "1"])
        .ok()
        .mentions("still names ref v2.0.0");
    assert_eq!(served(&agent)["marker"], "one");
    let h = history(&project, "svc");
    let last = h.last().unwrap();
    assert_eq!(last["ref"], "v1.0.0", "{last}");
    assert_eq!(last["commit"], one.as_str());
    assert_eq!(last["note"], "rollback to #1 (from #4)", "{last}");
    project
        .deployctl(&["history", "svc"])
        .ok()
        .mentions("rollback to #1");
    project
        .deployctl(&["run", "--load", "svc"])
        .ok()
        .mentions("is a rollback to #1");
    assert_eq!(served(&agent)["marker"], "two");
}

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

#[test]
fn plan_and_dry_run_show_what_a_run_would_change_and_change_nothing() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let one = repo.commit_app("one", Some("v1.0.0"));
    let two = repo.commit_app("two", Some("v2.0.0"));
    project
        .deployctl(&[
            "declare",
            "deployment",
            "svc",
            "--repo",
            &repo.url(),
            "--ref",
            "v1.0.0",
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
            "--pip",
            "six==1.16.0",
        ])
        .ok();
    let plan = |args: &[&str]| {
        let mut all = vec!["plan", "svc"];
        all.extend_from_slice(args);
        project.deployctl(&all)
    };

    // Not deployed yet: it would be, at v1.0.0's commit.
    plan(&[])
        .ok()
        .mentions("not deployed here")
        .mentions(&one[..10]);
    project.deployctl(&["run", "--load", "svc"]).ok();

    // The same declaration: no changes.
    plan(&[]).ok().mentions("No changes");
    let out = plan(&["--output", "json"]);
    out.ok();
    assert_eq!(out.json()["changes"], false, "{out}");

    // Another ref and an env var: the new commit and the field, the environment reused.
    let out = plan(&[
        "--ref",
        "v2.0.0",
        "--env-var",
        "LOG=debug",
        "--output",
        "json",
    ]);
    out.ok();
    let a = &out.json()["agents"][0];
    assert_eq!(a["new"]["ref"], "v2.0.0", "{a}");
    assert_eq!(a["new"]["commit"], two.as_str(), "{a}");
    assert_eq!(a["current"]["commit"], one.as_str(), "{a}");
    assert_eq!(a["environment"], "reused", "{a}");
    assert_eq!(a["fields"][0]["field"], "env_vars", "{a}");
    assert_eq!(out.json()["changes"], true);

    // Another package version: built, and the version installed now is named.
    let d = project
        .read("svc.deploy.yaml")
        .replace("six==1.16.0", "six==1.17.0");
    project.write("svc.deploy.yaml", &d);
    let out = plan(&["--output", "json"]);
    out.ok();
    let a = &out.json()["agents"][0];
    assert_eq!(a["environment"], "built", "{a}");
    assert_eq!(a["packages"]["changed"][0]["to"], "six==1.17.0", "{a}");
    assert_eq!(a["packages"]["changed"][0]["installed"], "1.16.0", "{a}");
    plan(&[])
        .ok()
        .mentions("~ six==1.16.0 → six==1.17.0 (installed now: 1.16.0)");

    // run --dry-run: the plan, and nothing deployed or written.
    let before = project.read("svc.deploy.yaml");
    project
        .deployctl(&["run", "svc", "--ref", "v2.0.0", "--dry-run"])
        .ok()
        .mentions("nothing is changed")
        .mentions("→ v2.0.0");
    assert_eq!(project.read("svc.deploy.yaml"), before);
    assert_eq!(served(&agent)["marker"], "one");
    assert_eq!(history(&project, "svc").len(), 1);
}

#[test]
fn python_names_the_interpreter_version_and_a_missing_one_is_named() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("py", Some("v1"));
    project
        .run_app(ENV, "svc", &repo.url(), "v1", &["--python", "3.11"])
        .ok()
        .mentions("for Python 3.11");
    let served = served(&agent);
    let python = served["python"].as_str().unwrap_or("");
    assert!(
        python.contains("/envs/"),
        "not the environment's python: {served}"
    );
    project
        .deployctl(&["exec", "svc", "--", "python", "--version"])
        .ok()
        .mentions("Python 3.11");
    assert!(
        project.read("svc.deploy.yaml").contains("python: '3.11'")
            || project.read("svc.deploy.yaml").contains("python: \"3.11\"")
    );

    // A version the node does not have: the deploy fails naming the versions it has.
    project
        .run_app(
            ENV,
            "other",
            &repo.url(),
            "v1",
            &["--python", "3.99", "--port", "8001"],
        )
        .expect_code(1)
        .mentions("Python 3.99 is not on this node (present: 3.11");
    // Not a version at all: bad input, naming the field.
    project
        .deployctl(&[
            "declare",
            "deployment",
            "bad",
            "--repo",
            &repo.url(),
            "--command",
            "x",
            "--python",
            "three",
        ])
        .expect_code(2)
        .mentions("python: \"three\" is not a Python version");
}

/// Unix milliseconds now.
fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn logs_since_and_timestamps_use_the_time_the_agent_received_each_line() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("stamped", Some("v1"));
    project.run_app(ENV, "svc", &repo.url(), "v1", &[]).ok();
    let listening = |out: &Output| out.stdout.matches("listening on").count();

    // The first line is stamped (by the agent's note of it) with a time before `mid`.
    let stamped_once = wait_until(Duration::from_secs(10), || {
        let out = project.deployctl(&["logs", "svc", "--timestamps"]);
        out.stdout
            .lines()
            .any(|l| l.starts_with("20") && l.contains("listening on"))
    });
    assert!(stamped_once, "no stamped line");
    let mid = now_ms() + 300;
    assert!(wait_until(Duration::from_secs(2), || now_ms() > mid + 300));
    let mid_text = {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(mid as u64);
        humantime::format_rfc3339_millis(t).to_string()
    };

    // A second process writes the same line again, after `mid`.
    project.deployctl(&["restart", "svc"]).ok();
    assert!(wait_until(Duration::from_secs(10), || {
        listening(&project.deployctl(&["logs", "svc"])) == 2
    }));
    let since = project.deployctl(&["logs", "svc", "--since", &mid_text]);
    since.ok();
    assert_eq!(
        listening(&since),
        1,
        "--since {mid_text} shows the later line only\n{since}"
    );
    let ago = project.deployctl(&["logs", "svc", "--since", "1h", "-t"]);
    ago.ok();
    assert_eq!(listening(&ago), 2, "{ago}");
    let stamps: Vec<&str> = ago
        .stdout
        .lines()
        .filter(|l| l.contains("listening on"))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert!(
        stamps[0] < mid_text.as_str() && stamps[1] >= mid_text.as_str(),
        "{stamps:?} around {mid_text}"
    );
    project
        .deployctl(&["logs", "svc", "--since", "yesterday"])
        .expect_code(2)
        .mentions("--since");
}
