//! Operating a deployment without deploying: `restart` (a new process of the same release,
//! no failed request under load), `stop` (status says stopped, an agent restart does not
//! start it) and `start`; `env set` and `rollback`; `plan` and `run --dry-run`; `python`.

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
