//! `deployctl check` and the checks `run` makes first: with real git repositories (a local
//! one, and a clone of a bare one), a real virtual environment made with uv, and a real
//! agent for secrets and for `run --strict`.

use std::path::Path;
use std::process::Command;

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";
const LONG: std::time::Duration = std::time::Duration::from_secs(60);

/// The findings of `check NAME --output json`, one object per line.
fn findings(out: &Output) -> Vec<Value> {
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}\n{out}")))
        .collect()
}

fn checks(found: &[Value]) -> Vec<String> {
    found
        .iter()
        .map(|f| f["check"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A virtual environment with one real package from PyPI in it.
fn venv_with(dir: &Path, package: &str) -> String {
    let uv = require_tool("uv", "pip install uv (scripts/test.sh installs it)");
    let venv = dir.join("venv");
    let run = |args: &[&str]| {
        let out = Command::new(&uv)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("uv {args:?}: {e}"));
        assert!(
            out.status.success(),
            "uv {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let v = venv.to_string_lossy().into_owned();
    run(&["venv", "-q", &v]);
    run(&[
        "pip",
        "install",
        "-q",
        "--python",
        &format!("{v}/bin/python"),
        package,
    ]);
    v
}

const APP: &str = r#"import json
import os

import six
from helpers import greeting

ROWS = open("data/iris.csv").read().splitlines()
print(greeting, six.__version__, len(ROWS), json.dumps(dict(os.environ)) != "")
"#;

#[test]
fn check_names_what_works_only_here_each_with_its_fix() {
    let project = Project::new();
    let repo = GitRepo::new();
    repo.write("app.py", APP)
        .write("helpers.py", "greeting = 'hello'\n")
        .write(".gitignore", "data/\n")
        .write("data/iris.csv", "sepal,petal\n1,2\n");
    repo.commit("app");
    repo.write("notes.py", "# not committed\n");
    let venv = venv_with(project.path(), "six==1.16.0");
    let envs = [("VIRTUAL_ENV", venv.as_str())];
    project
        .deployctl(&[
            "declare",
            "deployment",
            "iris",
            "--repo",
            &repo.url(),
            "--ref",
            "main",
            "--command",
            "cd . && python3 app.py --port 9000",
            "--pip",
            "requests",
        ])
        .ok();

    let out = project.deployctl_in(
        project.path(),
        &envs,
        &["check", "iris", "--output", "json"],
        LONG,
    );
    out.expect_code(1);
    let found = findings(&out);
    let names = checks(&found);
    for expected in [
        "uncommitted",
        "untracked-data",
        "undeclared-package",
        "unpinned-packages",
        "cd-in-command",
        "literal-port",
        "branch-ref",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "no {expected}: {names:?}\n{out}"
        );
    }
    for f in &found {
        assert!(!f["fix"].as_str().unwrap_or("").is_empty(), "no fix: {f}");
        let level = f["level"].as_str().unwrap_or("");
        assert!(level == "warning" || level == "info", "{f}");
    }
    // Only the app's third-party import: not the standard library, not its own helpers.
    let undeclared: Vec<&Value> = found
        .iter()
        .filter(|f| f["check"] == "undeclared-package")
        .collect();
    assert_eq!(undeclared.len(), 1, "{out}");
    let text = project.deployctl_in(project.path(), &envs, &["check", "iris"], LONG);
    text.expect_code(1)
        // The version in the virtual environment, not the machine's python3's.
        .mentions("fix: declare it: --pip six==1.16.0")
        .mentions("notes.py (untracked)")
        .mentions("data/iris.csv which is here but not in git (ignored by .gitignore)")
        .mentions("--workdir")
        .mentions("names port 9000")
        .mentions("declared without a version: requests")
        .mentions("main is a branch");

    // Each fix applied: the repository is clean and the check says so, exit 0.
    repo.write("notes.py", "# committed now\n");
    repo.git(&["add", "-f", "data/iris.csv"]);
    repo.commit("data and notes");
    repo.tag("v1.0.0");
    project
        .deployctl(&[
            "declare",
            "deployment",
            "iris",
            "--ref",
            "v1.0.0",
            "--command",
            "python3 app.py --port $PORT",
            "--pip",
            "six==1.16.0",
        ])
        .ok();
    let d = project.read("iris.deploy.yaml");
    let d = d.replace("  - requests\n", "");
    project.write("iris.deploy.yaml", &d);
    let clean = project.deployctl_in(project.path(), &envs, &["check", "iris"], LONG);
    clean.ok().mentions("No findings");
}

#[test]
fn check_sees_commits_a_clone_has_not_pushed() {
    let project = Project::new();
    let origin = GitRepo::new();
    origin.commit_app("one", None);
    let bare = tempfile::tempdir().unwrap();
    let bare_path = bare.path().join("app.git");
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.email=e2e@example.org", "-c", "user.name=e2e"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(
        origin.path(),
        &["clone", "-q", "--bare", ".", &bare_path.to_string_lossy()],
    );
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("app");
    git(
        work.path(),
        &[
            "clone",
            "-q",
            &format!("file://{}", bare_path.display()),
            "app",
        ],
    );
    project
        .deployctl(&[
            "declare",
            "deployment",
            "app",
            "--repo",
            &format!("file://{}", bare_path.display()),
            "--ref",
            "main",
            "--command",
            "python3 app.py",
        ])
        .ok();
    let check = || project.deployctl_in(&clone, &[], &["check", "app"], LONG);

    // Pushed: nothing about commits.
    let out = check();
    assert!(!out.stdout.contains("not pushed"), "{out}");
    assert!(!out.stdout.contains("is not your checkout"), "{out}");

    std::fs::write(clone.join("app.py"), app_py("two")).unwrap();
    git(&clone, &["commit", "-q", "-am", "two"]);
    check()
        .expect_code(1)
        .mentions("has 1 commit that main")
        .mentions("(not pushed)")
        .mentions("fix: git push origin main");

    git(&clone, &["push", "-q", "origin", "main"]);
    let out = check();
    assert!(!out.stdout.contains("not pushed"), "{out}");

    // Checked out behind what will be deployed: the deploy runs code not run here.
    git(&clone, &["checkout", "-q", "HEAD~1"]);
    check()
        .expect_code(1)
        .mentions("is not your checkout")
        .mentions("the deploy runs code you have not run here");
}

#[test]
fn run_warns_strict_refuses_and_secrets_are_checked_on_each_agent() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("checked", Some("v1"));
    repo.write("scratch.py", "# work in progress\n");
    let url = repo.url();
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "web",
            "--repo",
            &url,
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
            "--health-path",
            "/health",
        ];
        args.extend_from_slice(extra);
        project.deployctl(&args)
    };

    // --strict: the warning stops it before anything reaches the agent.
    deploy(&["--strict"])
        .expect_code(1)
        .mentions("scratch.py (untracked)")
        .mentions("--strict: nothing was deployed");
    assert!(
        agent.record("web").is_none(),
        "a strict run with warnings deployed"
    );
    assert!(!project.path().join("web.deploy.yaml").exists());

    // Without it: the same warning, and the deploy goes on.
    deploy(&[])
        .ok()
        .mentions("warning: 1 file in the repository is not committed");
    assert!(agent.record("web").is_some());

    // A secret the owner has not set on the agent: named, with the agent and the fix.
    let d = project.read("web.deploy.yaml") + "secrets:\n- API_KEY\n";
    project.write("web.deploy.yaml", &d);
    let out = project.deployctl(&["check", "web", "--output", "json"]);
    out.expect_code(1);
    let found = findings(&out);
    let missing: Vec<&Value> = found
        .iter()
        .filter(|f| f["check"] == "missing-secret")
        .collect();
    assert_eq!(missing.len(), 1, "{out}");
    assert_eq!(missing[0]["agent"], agent.address().as_str(), "{out}");
    assert!(
        missing[0]["fix"]
            .as_str()
            .unwrap_or("")
            .contains("secret set"),
        "{out}"
    );

    project.write("key", "s3cr3t\n");
    project
        .deployctl(&["secret", "set", "API_KEY", "--from-file", "key"])
        .ok();
    std::fs::remove_file(repo.path().join("scratch.py")).unwrap();
    let out = project.deployctl(&["check", "web"]);
    out.ok().mentions("No findings");
}
