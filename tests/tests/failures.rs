//! Deploys that fail: a release that never becomes healthy or exits at once (the previous
//! release keeps serving), a repository or ref that does not exist, and a first deploy that
//! fails (nothing of it is left).

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// Deploys the standard app at `v1` as `name` (with `extra` flags) and checks it serves
/// release 1.
fn deploy_good(
    agent: &Agent,
    project: &Project,
    repo: &GitRepo,
    name: &str,
    extra: &[&str],
) -> String {
    let commit = repo.commit_app("good", Some("v1"));
    project.run_app(ENV, name, &repo.url(), "v1", extra).ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "good", "{served}");
    commit
}

/// Commits `app` as tag v2 and redeploys `svc` to it with a 5 s health timeout.
fn redeploy_broken(project: &Project, repo: &GitRepo, app: &str, message: &str) -> Output {
    repo.write("app.py", app);
    repo.commit(message);
    repo.tag("v2");
    project.deployctl(&[
        "run",
        "svc",
        "--env",
        ENV,
        "--ref",
        "v2",
        "--health-timeout",
        "5s",
    ])
}

/// After a failed redeploy: release 1 still answers and `status` says healthy at release 1.
fn assert_release_1_kept(agent: &Agent, project: &Project, name: &str, commit: &str) {
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(15));
    assert_eq!(
        served["marker"], "good",
        "the previous release should still answer: {served}"
    );
    assert_eq!(served["release"], "1", "{served}");
    let mut last = None;
    let healthy = wait_until(Duration::from_secs(15), || {
        let out = project.deployctl(&["status", name, "--output", "json"]);
        let ok = out.code == 0;
        last = Some(out);
        ok
    });
    let out = last.unwrap();
    assert!(
        healthy,
        "status should say healthy again after the failed deploy\n{out}"
    );
    let dep = out.json()["deployments"][0].clone();
    let inst = check_status_shape(&dep);
    assert_eq!(inst["state"], "healthy", "{inst:#}");
    assert_eq!(inst["release"], 1, "{inst:#}");
    assert_eq!(inst["commit"], commit, "{inst:#}");
}

#[test]
fn broken_release_never_healthy_keeps_previous() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let good = deploy_good(&agent, &project, &repo, "svc", &[]);
    let (_, before) = project.status_json("svc");

    let out = redeploy_broken(
        &project,
        &repo,
        NEVER_HEALTHY_PY,
        "broken: /health says 503",
    );
    out.expect_code(1).mentions("health").mentions("503");
    // Beside it behind the node proxy: release 1 never stopped, the same process serves.
    out.mentions("the previous release 1 was kept running (healthy)");
    let (_, after) = project.status_json("svc");
    assert_eq!(
        after["instances"][0]["pid"], before["instances"][0]["pid"],
        "{before:#} {after:#}"
    );
    assert_release_1_kept(&agent, &project, "svc", &good);
}

#[test]
fn with_recreate_a_never_healthy_release_restarts_the_previous_one() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let good = deploy_good(&agent, &project, &repo, "svc", &["--strategy", "recreate"]);

    let out = redeploy_broken(
        &project,
        &repo,
        NEVER_HEALTHY_PY,
        "broken: /health says 503",
    );
    out.expect_code(1).mentions("health").mentions("kept");
    // What the check last saw is explained.
    out.mentions("503");
    // Release 1 had to give up the port: it says so, and names its new process.
    let (_, dep) = project.status_json("svc");
    out.mentions(&format!(
        "had been stopped to free its port, and was started again as pid {} (healthy)",
        dep["instances"][0]["pid"]
    ));

    assert_release_1_kept(&agent, &project, "svc", &good);
}

#[test]
fn release_exiting_at_once_keeps_previous() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let good = deploy_good(&agent, &project, &repo, "svc", &[]);

    let out = redeploy_broken(&project, &repo, EXIT_AT_ONCE_PY, "broken: exits at once");
    out.expect_code(1).mentions("kept");
    let text = out.all().to_lowercase();
    assert!(
        text.contains("health") || text.contains("start"),
        "the failed step should be named\n{out}"
    );
    // The exit code and the app's last words.
    out.mentions("3").mentions("missing configuration");

    assert_release_1_kept(&agent, &project, "svc", &good);
}

#[test]
fn unknown_repo_fails_and_creates_nothing() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let missing = project.path().join("no-such-repo");
    let missing = missing.to_string_lossy();
    let out = project.deployctl(&[
        "run",
        "ghost",
        "--env",
        ENV,
        "--repo",
        &missing,
        "--ref",
        "main",
        "--command",
        "python3 app.py",
    ]);
    out.expect_code(1)
        .mentions(&missing)
        .mentions("does not exist");
    assert!(
        !project.path().join("ghost.deploy.yaml").exists(),
        "a deploy that failed everywhere writes no declaration"
    );

    let status = project.deployctl(&["status", "ghost", "--output", "json"]);
    assert_eq!(
        status.code, 1,
        "a deployment that never deployed is not healthy\n{status}"
    );
    assert!(
        http_get(&agent.app_url(8000, "/")).is_none(),
        "nothing should listen on 8000"
    );
    assert!(agent
        .record("ghost")
        .and_then(|r| r["pid"].as_u64())
        .is_none());
}

#[test]
fn unknown_ref_fails_and_keeps_status() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();

    // Never deployed: fails, nothing created.
    repo.commit_app("good", Some("v1"));
    let out = project.deployctl(&[
        "run",
        "fresh",
        "--env",
        ENV,
        "--repo",
        &repo.url(),
        "--ref",
        "no-such-ref",
        "--command",
        "python3 app.py",
        "--port",
        "8001",
    ]);
    out.expect_code(1).mentions("no-such-ref");
    let status = project.deployctl(&["status", "fresh"]);
    assert_eq!(status.code, 1, "{status}");

    // Deployed: a bad ref leaves it as it was.
    let out = project.run_app(ENV, "svc", &repo.url(), "v1", &[]);
    out.ok();
    let good = repo.head();
    let declaration = std::fs::read_to_string(project.path().join("svc.deploy.yaml")).unwrap();
    let out = project.deployctl(&["run", "svc", "--env", ENV, "--ref", "v9.9.9"]);
    out.expect_code(1).mentions("v9.9.9");
    assert_eq!(
        std::fs::read_to_string(project.path().join("svc.deploy.yaml")).unwrap(),
        declaration,
        "a failed deploy leaves the declaration as it was"
    );
    let (out, dep) = project.status_json("svc");
    out.ok();
    let inst = check_status_shape(&dep);
    assert_eq!(inst["release"], 1, "{inst:#}");
    assert_eq!(inst["ref"], "v1", "{inst:#}");
    assert_eq!(inst["commit"], good.as_str(), "{inst:#}");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(5));
    assert_eq!(served["marker"], "good", "{served}");
}

/// Asserts that nothing of `name` is left on the agent: no directory, `status` says not found.
fn assert_nothing_left(agent: &Agent, project: &Project, name: &str) {
    let dir = agent.deployment_dir(name);
    assert!(
        !dir.exists(),
        "a failed first deploy should leave nothing, but {} exists",
        dir.display()
    );
    project
        .deployctl(&["status", name])
        .expect_code(1)
        .mentions("not found");
}

#[test]
fn a_failed_first_deploy_leaves_nothing_and_remove_clears_leftovers() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", EXIT_AT_ONCE_PY);
    // A version of a real package that does not exist on the index.
    repo.write("requirements.txt", "six==999.0.0\n");
    repo.commit("exits at once, requires what does not exist");
    let url = repo.url();

    // A command that exits at once: the deploy got as far as starting it.
    let out = project.deployctl(&[
        "run",
        "once",
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--health-timeout",
        "5s",
    ]);
    out.expect_code(1).mentions("missing configuration");
    assert_nothing_left(&agent, &project, "once");

    // A package that does not install.
    let out = project.deployctl_timeout(
        &[
            "run",
            "badpkg",
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--requirements",
            "requirements.txt",
            "--port",
            "8001",
        ],
        INSTALL_TIMEOUT,
    );
    out.expect_code(1).mentions("999.0.0");
    assert_nothing_left(&agent, &project, "badpkg");

    // What an older agent left (a directory and a log, no record): `remove` clears it.
    let old = agent.deployment_dir("old");
    std::fs::create_dir_all(old.join("logs")).unwrap();
    std::fs::write(old.join("logs/deploy.log"), "resolve failed\n").unwrap();
    project
        .deployctl(&["remove", "old"])
        .ok()
        .mentions("removed old");
    assert!(!old.exists(), "{} should be gone", old.display());
    project.deployctl(&["remove", "old"]).expect_code(1);
}

/// A command that changes directory breaks the app's imports: the failure says so and
/// names --workdir.
#[test]
fn a_command_that_changes_directory_is_told_to_use_workdir() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("service/__init__.py", "")
        .write("service/helpers.py", "GREETING = 'hi'\n")
        .write(
            "service/main.py",
            "from service.helpers import GREETING\nprint(GREETING)\n",
        )
        .commit("a package");
    let url = repo.url();
    project
        .deployctl(&[
            "run",
            "cd-app",
            "--repo",
            &url,
            "--command",
            "cd service && python3 main.py",
            "--health-timeout",
            "5s",
        ])
        .expect_code(1)
        .mentions("ModuleNotFoundError")
        .mentions("the command changes directory (`cd service`)")
        .mentions("--workdir service");
}

/// The app's server is a daemonized child (its own session) listening on the wrong port.
const DAEMON_WRONG_PORT_PY: &str = r#"import os, subprocess, sys, time
server = "import http.server, os; http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT']) + 1), http.server.BaseHTTPRequestHandler).serve_forever()"
subprocess.Popen([sys.executable, "-c", server], start_new_session=True)
while True:
    time.sleep(1)
"#;

/// ... and it fails within seconds, not after the 2-minute health timeout.
#[test]
fn a_failed_start_names_where_a_daemonized_server_listens() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", DAEMON_WRONG_PORT_PY)
        .commit("wrong port");
    let url = repo.url();
    let args = fast_run_args("e2e", "wrong", &url, &[]);
    assert!(args.contains(&"120s"), "{args:?}");
    let began = std::time::Instant::now();
    let out = project.deployctl(&args);
    out.expect_code(1);
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "the deploy took {:?} to fail",
        began.elapsed()
    );
    // Its private port (behind the node proxy) is what the health check connected to.
    let port: u16 = out
        .stdout
        .split(&format!("TCP connect to {}:", agent.ip))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no health target in the output\n{out}"));
    out.mentions(&format!(
        "the app listens on {}:{} instead",
        agent.ip,
        port + 1
    ));
}
