//! No lost update (issue 22, item 6): concurrent changes of one deployment end with every
//! change in the running app and in the declaration. From one project, the commands wait
//! for each other (the declaration's lock); from two checkouts, the agent refuses the one
//! based on a stale generation and the CLI computes it again on what runs then.

use std::collections::BTreeMap;
use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";

/// The running app's process environment (its pid from `status`), and its release.
fn running_env(project: &Project, name: &str) -> (u64, BTreeMap<String, String>) {
    let (out, dep) = project.status_json(name);
    let inst = &dep["instances"][0];
    assert_eq!(inst["state"], "healthy", "{out}");
    let pid = inst["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid in status\n{out}"));
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_else(|e| panic!("reading the environment of pid {pid}: {e}\n{out}"));
    let env = raw
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    (inst["release"].as_u64().unwrap_or(0), env)
}

/// The env vars of NAME.deploy.yaml (`KEY: value` lines under `env_vars:`).
fn declared_vars(project: &Project, name: &str) -> BTreeMap<String, String> {
    let text = project.read(&format!("{name}.deploy.yaml"));
    text.lines()
        .skip_while(|l| !l.starts_with("env_vars:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(": ")?;
            Some((k.to_string(), v.trim_matches('\'').to_string()))
        })
        .collect()
}

fn history(project: &Project, name: &str) -> Vec<Value> {
    let out = project.deployctl(&["history", name, "--output", "json"]);
    out.ok();
    out.json()["releases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn deployed(project: &Project, repo: &GitRepo) {
    repo.commit_app("one", Some("v1"));
    project
        .run_app(ENV, "app", &repo.url(), "v1", &["--port", "8000"])
        .ok();
}

#[test]
fn concurrent_env_sets_both_reach_the_app_and_the_declaration() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    deployed(&project, &repo);

    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| project.deployctl(&["env", "set", "app", "A=1"]));
        let b = s.spawn(|| project.deployctl(&["env", "set", "app", "B=2"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.ok();
    b.ok();
    let (release, env) = running_env(&project, "app");
    assert_eq!(env.get("A").map(String::as_str), Some("1"), "{env:?}");
    assert_eq!(env.get("B").map(String::as_str), Some("2"), "{env:?}");
    assert_eq!(release, 3);
    let declared = declared_vars(&project, "app");
    assert_eq!(
        declared.get("A").map(String::as_str),
        Some("1"),
        "{declared:?}"
    );
    assert_eq!(
        declared.get("B").map(String::as_str),
        Some("2"),
        "{declared:?}"
    );
    let h = history(&project, "app");
    let results: Vec<&str> = h.iter().filter_map(|r| r["result"].as_str()).collect();
    assert_eq!(results, ["ok", "ok", "ok"], "{h:#?}");
}

#[test]
fn run_with_a_new_ref_and_env_set_at_once_run_the_new_ref_with_the_variable() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    deployed(&project, &repo);
    let v2 = repo.commit_app("two", Some("v2"));

    let (run, set) = std::thread::scope(|s| {
        let run = s.spawn(|| project.deployctl(&["run", "app", "--ref", "v2"]));
        let set = s.spawn(|| project.deployctl(&["env", "set", "app", "Y=1"]));
        (run.join().unwrap(), set.join().unwrap())
    });
    run.ok();
    set.ok();
    let (_, env) = running_env(&project, "app");
    assert_eq!(env.get("Y").map(String::as_str), Some("1"), "{env:?}");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(20));
    assert_eq!(served["marker"], "two", "{served}");
    assert_eq!(served["commit"], v2.as_str());
    // The declaration says what runs.
    let file = project.read("app.deploy.yaml");
    assert!(file.contains("ref: v2"), "{file}");
    assert_eq!(
        declared_vars(&project, "app").get("Y").map(String::as_str),
        Some("1"),
        "{file}"
    );
}

#[test]
fn env_sets_from_two_checkouts_are_ordered_by_the_agent() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let one = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    deployed(&one, &repo);
    // Another checkout with the same shared state: its own declarations and locks.
    let two = Project::for_agent(ENV, &agent);
    let state = one.path().join(".deployctl/state.json");
    two.write(
        ".deployctl.yaml",
        &format!(
            "core:\n  default_env: {ENV}\n  state:\n    uri: {}\n",
            state.display()
        ),
    );

    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| one.deployctl(&["env", "set", "app", "A=1"]));
        let b = s.spawn(|| two.deployctl(&["env", "set", "app", "B=2"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.ok();
    b.ok();
    // Both were sent based on the same generation: the agent refused the second, which
    // was computed again on the first's result.
    let both = format!("{}\n{}", a.all(), b.all());
    assert!(
        both.contains("changed on this agent since this change was prepared"),
        "{a}\n{b}"
    );
    assert!(both.contains("computing the change again"), "{a}\n{b}");
    let (_, env) = running_env(&one, "app");
    assert_eq!(env.get("A").map(String::as_str), Some("1"), "{env:?}");
    assert_eq!(env.get("B").map(String::as_str), Some("2"), "{env:?}");
    // The shared state's declaration as deployed has both.
    let st: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let vars = &st["deployments"]["app"]["declaration"]["env_vars"];
    assert_eq!(
        (vars["A"].clone(), vars["B"].clone()),
        ("1".into(), "2".into()),
        "{st:#}"
    );
}
