//! A repository is its author's content: a symlink in it must not make the agent read or
//! run a file of the node outside the checkout. A requirements file, a file it includes and
//! a start script that point outside are refused with the path and where it points; nothing
//! of the outside file reaches the deploy's output or logs; the running release keeps
//! serving. Links that stay inside the checkout work.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";
const SECRET: &str = "topsecret-line-7f3a";

#[test]
fn symlinks_out_of_the_checkout_are_refused_and_inside_ones_work() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    // A file of the node the repository's author should never see.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let evil = outside.path().join("evil.sh");
    std::fs::write(&evil, format!("#!/bin/sh\necho {SECRET}-ran\n")).unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // Release 1: links inside the checkout are fine.
    let repo = GitRepo::new();
    repo.write("real-requirements.txt", "# nothing to install\n");
    std::os::unix::fs::symlink("real-requirements.txt", repo.path().join("req.txt")).unwrap();
    repo.write_executable(
        "scripts/prepare.sh",
        "#!/bin/sh\necho prepared > prepared.txt\n",
    );
    std::os::unix::fs::symlink("scripts/prepare.sh", repo.path().join("run.sh")).unwrap();
    let good = repo.commit_app("inside-links", Some("v1"));
    project
        .run_app(
            ENV,
            "web",
            &repo.url(),
            "v1",
            &["--requirements", "req.txt", "--start-script", "run.sh"],
        )
        .ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "inside-links", "{served}");

    // A requirements file that is a link out, one that includes a file out, a start script
    // that is a link out.
    let cases: [(&str, &[&str]); 3] = [
        ("req-out", &["--requirements", "req-out.txt"]),
        ("include-out", &["--requirements", "include.txt"]),
        ("script-out", &["--start-script", "evil-run.sh"]),
    ];
    std::os::unix::fs::symlink(&secret, repo.path().join("req-out.txt")).unwrap();
    repo.write("include.txt", "-r nested/more.txt\n");
    std::fs::create_dir_all(repo.path().join("nested")).unwrap();
    std::os::unix::fs::symlink(&secret, repo.path().join("nested/more.txt")).unwrap();
    std::os::unix::fs::symlink(&evil, repo.path().join("evil-run.sh")).unwrap();
    repo.commit_app("links-out", Some("v2"));
    for (what, flags) in cases {
        let out = project.run_app(ENV, "web", &repo.url(), "v2", flags);
        out.expect_code(1)
            .mentions("points outside the repository's checkout")
            .mentions(&secret_or_evil(what, &secret, &evil));
        assert!(!out.all().contains(SECRET), "{what}: {out}");
        // Nothing of it in the logs either, and release 1 still serves.
        let logs = project.deployctl(&["logs", "web", "--deploy", "-n", "500"]);
        assert!(!logs.all().contains(SECRET), "{what}: {logs}");
        let logs = project.deployctl(&["logs", "web", "-n", "500"]);
        assert!(!logs.all().contains(SECRET), "{what}: {logs}");
        let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(5));
        assert_eq!(served["marker"], "inside-links", "{what}: {served}");
        let (_, dep) = project.status_json("web");
        assert_eq!(
            dep["instances"][0]["commit"],
            good.as_str(),
            "{what}: {dep:#}"
        );
    }
}

/// The outside file a case's refusal names.
fn secret_or_evil(what: &str, secret: &std::path::Path, evil: &std::path::Path) -> String {
    let target = if what == "script-out" { evil } else { secret };
    target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf())
        .display()
        .to_string()
}
