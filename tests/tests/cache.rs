//! Fast iteration: environments are reused by content hash (and built once when asked for
//! at the same time), pinned with `--locked`, kept when unused within a budget and reused
//! by later deploys; a corrupt git mirror is cloned again. Behaviour is checked, never timed.

use std::path::Path;
use std::time::Duration;

use deployctl_e2e::*;

fn run_with_pip(project: &Project, repo: &GitRepo, name: &str, port: &str, pip: &str) -> Output {
    project.deployctl_timeout(
        &[
            "run",
            name,
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
            "--port",
            port,
            "--pip",
            pip,
            "--env-var",
            "APP_IMPORT=six",
            "--health-path",
            "/health",
        ],
        INSTALL_TIMEOUT,
    )
}

fn envs(agent: &Agent) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(agent.data_dir.join("envs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn history(project: &Project, name: &str) -> Vec<serde_json::Value> {
    let out = project.deployctl(&["history", name, "--output", "json"]);
    out.ok();
    out.json()["releases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn same_packages_reuse_the_environment_and_new_requirements_build_one() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("one", None);
    run_with_pip(&project, &repo, "svc", "8000", "six==1.16.0")
        .ok()
        .mentions("built environment");
    repo.commit_app("two", None);
    let out = run_with_pip(&project, &repo, "svc", "8000", "six==1.16.0");
    out.ok()
        .mentions("reused environment")
        .mentions("nothing to install");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "two");
    assert_eq!(served["module_version"], "1.16.0", "{served}");
    let h = history(&project, "svc");
    assert_eq!(h.len(), 2);
    assert!(!h[0]["packages_hash"].as_str().unwrap_or("").is_empty());
    assert_eq!(
        h[0]["packages_hash"], h[1]["packages_hash"],
        "same packages, same environment"
    );
    assert_eq!(envs(&agent).len(), 1);

    // A requirements file: its content is part of the key.
    repo.write("requirements.txt", "idna==3.7\n");
    repo.commit("requirements");
    let req_run = |project: &Project| {
        project.deployctl_timeout(
            &[
                "run",
                "svc",
                "--requirements",
                "requirements.txt",
                "--pip",
                "six==1.16.0",
            ],
            INSTALL_TIMEOUT,
        )
    };
    req_run(&project).ok().mentions("built environment");
    repo.write("requirements.txt", "idna==3.8\n");
    repo.commit("newer idna");
    req_run(&project).ok().mentions("built environment");
    let h = history(&project, "svc");
    assert_ne!(
        h[2]["packages_hash"], h[3]["packages_hash"],
        "changed requirements, new environment"
    );
    // The status shows the current environment's key.
    let (_, dep) = project.status_json("svc");
    assert_eq!(dep["instances"][0]["packages_hash"], h[3]["packages_hash"]);
}

#[test]
fn concurrent_deploys_sharing_a_key_build_it_once() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("pair", None);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run_with_pip(&project, &repo, "a", "8000", "six==1.16.0"));
        let b = s.spawn(|| run_with_pip(&project, &repo, "b", "8001", "six==1.16.0"));
        (a.join().unwrap(), b.join().unwrap())
    });
    a.ok();
    b.ok();
    let built = [&a, &b]
        .iter()
        .filter(|o| o.all().contains("built environment"))
        .count();
    let reused = [&a, &b]
        .iter()
        .filter(|o| o.all().contains("reused environment"))
        .count();
    assert_eq!(
        (built, reused),
        (1, 1),
        "one builds, the other waits and reuses\n{a}\n{b}"
    );
    assert_eq!(envs(&agent).len(), 1);
}

fn nodes_venvs(project: &Project) -> serde_json::Value {
    let out = project.deployctl(&["nodes", "--output", "json"]);
    out.ok();
    out.json()["nodes"][0]["venvs"].clone()
}

/// A removed deployment's environment is kept (within the budget) and reused by the next
/// deploy of the same packages, under another name too: no second cold install.
#[test]
fn unused_environments_are_kept_and_reused_under_a_new_name() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("gc", None);
    run_with_pip(&project, &repo, "keep", "8000", "six==1.16.0").ok();
    run_with_pip(&project, &repo, "drop", "8001", "six==1.17.0").ok();
    assert_eq!(envs(&agent).len(), 2);
    let dropped = history(&project, "drop")[0]["packages_hash"]
        .as_str()
        .unwrap()
        .to_string();
    project.deployctl(&["remove", "drop"]).ok();
    assert_eq!(envs(&agent).len(), 2, "the unused environment is kept");
    let venvs = nodes_venvs(&project);
    assert_eq!(venvs["in_use"], 1, "{venvs}");
    assert_eq!(venvs["unused"], 1, "{venvs}");
    assert!(venvs["unused_bytes"].as_u64().unwrap_or(0) > 0, "{venvs}");

    run_with_pip(&project, &repo, "renamed", "8001", "six==1.17.0")
        .ok()
        .mentions(&format!("reused environment {dropped}"));
    assert_eq!(
        history(&project, "renamed")[0]["packages_hash"],
        dropped.as_str()
    );
    let served = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(5));
    assert_eq!(served["module_version"], "1.17.0");
    // (Counted by the collection that runs once the deploy has answered.)
    let mut venvs = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            venvs = nodes_venvs(&project);
            (venvs["in_use"].as_u64(), venvs["unused"].as_u64()) == (Some(2), Some(0))
        }),
        "{venvs}"
    );
}

/// Past the budget unused environments go: at once with no room for any, and when they
/// have not been used for `venv_keep_age`; the ones in use always stay.
#[test]
fn unused_environments_past_the_budget_are_collected_and_used_ones_kept() {
    for (config, what) in [
        ("venv_keep_bytes = 0\n", "no room"),
        ("venv_keep_age = \"1s\"\n", "too old"),
    ] {
        let ip = loopback();
        let agent = Agent::start_with(&ip, config, &[]);
        let project = Project::for_agent("e2e", &agent);
        let repo = GitRepo::new();
        repo.commit_app("gc", None);
        run_with_pip(&project, &repo, "keep", "8000", "six==1.16.0").ok();
        run_with_pip(&project, &repo, "drop", "8001", "six==1.17.0").ok();
        let deployed = std::time::Instant::now();
        let kept = history(&project, "keep")[0]["packages_hash"]
            .as_str()
            .unwrap()
            .to_string();
        project.deployctl(&["remove", "drop"]).ok();
        if what == "too old" {
            // Collected by the next deploy once its last use is more than a second ago.
            assert!(wait_until(Duration::from_secs(5), || deployed.elapsed()
                > Duration::from_millis(1500)));
            run_with_pip(&project, &repo, "keep", "8000", "six==1.16.0").ok();
        }
        // (After a deploy, collection runs once it has answered.)
        let mut left = Vec::new();
        assert!(
            wait_until(Duration::from_secs(10), || {
                left = envs(&agent);
                left == vec![kept.clone()]
            }),
            "{what}: only the one in use is left, not {left:?}"
        );
        let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(5));
        assert_eq!(served["module_version"], "1.16.0", "{what}");
    }
}

#[test]
fn locked_deploys_install_exactly_the_recorded_versions() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("free", None);
    project
        .deployctl(&[
            "run",
            "svc",
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
            "--locked",
        ])
        .expect_code(1)
        .mentions("--locked");
    // Unpinned: whatever six is newest; the exact version is recorded.
    run_with_pip(&project, &repo, "svc", "8000", "six").ok();
    let h = history(&project, "svc");
    let frozen: Vec<String> = h[0]["frozen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let six = frozen
        .iter()
        .find(|l| l.starts_with("six=="))
        .unwrap_or_else(|| panic!("{frozen:?}"));
    let version = six.trim_start_matches("six==").to_string();

    repo.commit_app("locked", None);
    let out = project.deployctl_timeout(&["run", "svc", "--locked"], INSTALL_TIMEOUT);
    out.ok().mentions("pinned");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "locked");
    assert_eq!(served["module_version"], version.as_str(), "{served}");
    let h = history(&project, "svc");
    assert_ne!(
        h[0]["packages_hash"], h[1]["packages_hash"],
        "a pinned environment has its own key"
    );
    // The pinned environment was built from exactly the recorded list.
    let pinned = agent
        .data_dir
        .join("envs")
        .join(h[1]["packages_hash"].as_str().unwrap())
        .join(".deploy-agent-pinned.txt");
    let text =
        std::fs::read_to_string(&pinned).unwrap_or_else(|e| panic!("{}: {e}", pinned.display()));
    assert!(text.contains(six.as_str()), "{text}");
}

/// Deletes every object of a bare mirror: it still opens, but has nothing.
fn corrupt(mirror: &Path) {
    let objects = mirror.join("objects");
    for entry in std::fs::read_dir(&objects).unwrap().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "info" {
            continue;
        }
        let _ = std::fs::remove_dir_all(entry.path());
    }
}

#[test]
fn a_corrupt_mirror_is_cloned_again() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("first", Some("v1"));
    let deploy = |r: &str| {
        project.deployctl(&[
            "run",
            "svc",
            "--repo",
            &repo.url(),
            "--ref",
            r,
            "--command",
            "python3 app.py",
        ])
    };
    deploy("v1").ok();
    let mirrors: Vec<_> = std::fs::read_dir(agent.data_dir.join("git"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(mirrors.len(), 1, "one mirror per repository");
    corrupt(&mirrors[0].path());
    repo.commit_app("second", Some("v2"));
    deploy("v2").ok().mentions("cloned it again");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "second");
    // And the same commit again from the rebuilt mirror: nothing to fetch.
    corrupt(&mirrors[0].path());
    deploy("v1").ok().mentions("cloned it again");
    deploy("v2").ok().mentions("nothing to fetch");
}

/// uv installs without compiling bytecode (for a big venv, compiling every module costs
/// ~13x the install); the agent compiles the venv in the background once the deploy has
/// answered, so later starts find the modules compiled.
#[test]
fn a_new_venv_is_compiled_after_the_deploy_answered() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("compiled", None);
    let out = run_with_pip(&project, &repo, "web", "8000", "six==1.16.0");
    out.ok();
    assert!(!out.all().contains("--compile-bytecode"), "{out}");
    let hash = history(&project, "web")[0]["packages_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let venv = agent.data_dir.join("envs").join(&hash);
    let six_pyc = || {
        let Ok(libs) = std::fs::read_dir(venv.join("lib")) else {
            return false;
        };
        libs.flatten().any(|py| {
            std::fs::read_dir(py.path().join("site-packages/__pycache__"))
                .map(|d| {
                    d.flatten().any(|f| {
                        let n = f.file_name().to_string_lossy().into_owned();
                        n.starts_with("six.cpython-") && n.ends_with(".pyc")
                    })
                })
                .unwrap_or(false)
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || six_pyc()
            && venv.join(".deploy-agent-compiled").exists()),
        "six was not compiled in {}",
        venv.display()
    );
    // The app still serves, from its compiled venv.
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(5));
    assert_eq!(served["module_version"], "1.16.0");
}
