//! `deployctl check` on a ref that does not exist (here, and on the remote a clone was made
//! from), and on deployctl's own files in the repository: the state and the declarations are
//! not files to commit.

use std::path::Path;
use std::process::Command;

use deployctl_e2e::*;
use serde_json::Value;

fn git(dir: &Path, args: &[&str]) {
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
}

/// The findings of `check NAME --output json` named `check`.
fn named(out: &Output, check: &str) -> Vec<Value> {
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}\n{out}")))
        .filter(|f| f["check"] == check)
        .collect()
}

#[test]
fn a_project_in_its_repository_a_missing_ref_is_a_warning_deployctl_files_are_not() {
    // The newcomer's layout: the project is the app's repository, deployed with --repo .
    let project = Project::new();
    let dir = project.path();
    git(dir, &["init", "-q", "-b", "main"]);
    project.write("app.py", &app_py("one"));
    // The test harness's own output files.
    project.write(".gitignore", ".e2e-*\n");
    git(dir, &["add", "app.py", ".gitignore"]);
    git(dir, &["commit", "-q", "-m", "app"]);
    git(dir, &["tag", "v1.0.0"]);
    project.write(".deployctl.yaml", "core:\n  default_env: local\n");
    project
        .deployctl(&[
            "declare",
            "deployment",
            "iris",
            "--repo",
            ".",
            "--ref",
            "v9.9.9",
            "--command",
            "python3 app.py",
        ])
        .ok();
    // What a deploy leaves: the state and its lock.
    project.write(".deployctl/state.json", "");
    project.write(".deployctl/state.lock", "");
    project.write("notes.py", "# not committed\n");

    let out = project.deployctl(&["check", "iris", "--output", "json"]);
    out.expect_code(1);
    let missing = named(&out, "ref-not-found");
    assert_eq!(missing.len(), 1, "{out}");
    assert_eq!(missing[0]["level"], "warning", "{out}");
    let message = missing[0]["message"].as_str().unwrap_or("");
    assert!(message.contains("ref v9.9.9 does not exist"), "{out}");
    assert!(message.contains("tags: v1.0.0"), "{out}");
    assert!(
        missing[0]["fix"]
            .as_str()
            .unwrap_or("")
            .contains("--ref v1.0.0"),
        "{out}"
    );
    // The app's uncommitted file is named; deployctl's files are not.
    let uncommitted = named(&out, "uncommitted");
    assert_eq!(uncommitted.len(), 1, "{out}");
    let message = uncommitted[0]["message"].as_str().unwrap_or("");
    assert!(message.starts_with("1 file "), "{out}");
    assert!(message.contains("notes.py (untracked)"), "{out}");
    for own in [".deployctl", "iris.deploy.yaml", ".deployctl.yaml"] {
        assert!(!out.stdout.contains(own), "{own} named: {out}");
    }
    project
        .deployctl(&["check", "iris"])
        .expect_code(1)
        .mentions("warning: ref v9.9.9 does not exist in ")
        .mentions("fix: deploy a ref that exists (--ref v1.0.0)");

    // Fixed: an existing tag, the app's file committed; the declaration and the state
    // still uncommitted, and nothing to say.
    git(dir, &["add", "notes.py"]);
    git(dir, &["commit", "-q", "-m", "notes"]);
    git(dir, &["tag", "v1.0.1"]);
    project
        .deployctl(&["declare", "deployment", "iris", "--ref", "v1.0.1"])
        .ok();
    project
        .deployctl(&["check", "iris"])
        .ok()
        .mentions("No findings");
}

#[test]
fn a_clone_a_ref_missing_on_its_remote_is_a_warning_with_the_push_to_make() {
    let project = Project::new();
    let origin = GitRepo::new();
    origin.commit_app("one", Some("v1.0.0"));
    let bare = tempfile::tempdir().unwrap();
    let bare_path = bare.path().join("app.git");
    git(
        origin.path(),
        &["clone", "-q", "--bare", ".", &bare_path.to_string_lossy()],
    );
    let work = tempfile::tempdir().unwrap();
    let clone = work.path().join("app");
    let url = format!("file://{}", bare_path.display());
    git(work.path(), &["clone", "-q", &url, "app"]);
    project
        .deployctl(&[
            "declare",
            "deployment",
            "app",
            "--repo",
            &url,
            "--ref",
            "v9.9.9",
            "--command",
            "python3 app.py",
        ])
        .ok();
    let check = || project.deployctl_in(&clone, &[], &["check", "app"], COMMAND_TIMEOUT);

    // Neither in the clone nor on its remote.
    check()
        .expect_code(1)
        .mentions("ref v9.9.9 does not exist, neither here nor on origin")
        .mentions("tags: v1.0.0")
        .mentions("fix: deploy a ref that exists (--ref v1.0.0), or create it (git tag v9.9.9 && git push origin v9.9.9)");

    // Tagged here, not pushed: the agent fetches from the remote, which does not have it.
    git(&clone, &["tag", "v9.9.9"]);
    check()
        .expect_code(1)
        .mentions("ref v9.9.9 is a tag here but does not exist on origin")
        .mentions("fix: git push origin v9.9.9, then deploy");

    // Pushed: nothing about the ref.
    git(&clone, &["push", "-q", "origin", "v9.9.9"]);
    let out = check();
    assert!(!out.stdout.contains("v9.9.9 is"), "{out}");
    assert!(!out.stdout.contains("does not exist"), "{out}");
    out.ok();

    // A branch that was never pushed is told the same way.
    project
        .deployctl(&["declare", "deployment", "app", "--ref", "feature"])
        .ok();
    git(&clone, &["branch", "feature"]);
    check()
        .expect_code(1)
        .mentions("ref feature is a branch here but does not exist on origin")
        .mentions("fix: git push origin feature, then deploy");
}
