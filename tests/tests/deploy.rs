//! Deploying: at a tag, at a short and a full commit, with a start script; what the app
//! serves and what `status --output json` says.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// [`Project::run_app`] (the stdlib app at REF, health on /health) in env e2e, plus `extra`.
fn run(project: &Project, name: &str, repo: &str, git_ref: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--health-timeout", "30s"];
    args.extend_from_slice(extra);
    project.run_app(ENV, name, repo, git_ref, &args)
}

#[test]
fn deploy_at_tag_serves_release_and_status_json() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let commit = repo.commit_app("tagged-v1", Some("v1.0.0"));
    // A later commit on main that is not deployed.
    repo.commit_app("untagged-main", None);

    let out = run(&project, "web", &repo.url(), "v1.0.0", &[]);
    out.ok().mentions(&format!("http://{ip}:8000"));

    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "tagged-v1", "{served}");
    assert_eq!(served["commit"], commit.as_str(), "{served}");
    assert_eq!(served["release"], "1", "{served}");
    assert_eq!(served["name"], "web", "{served}");
    assert_eq!(
        http_get(&agent.app_url(8000, "/health")).map(|r| r.0),
        Some(200)
    );

    // The declaration was written.
    let decl = project.read("web.deploy.yaml");
    assert!(
        decl.contains("v1.0.0") && decl.contains("python3 app.py"),
        "web.deploy.yaml:\n{decl}"
    );

    // Status: exit 0, the SPEC shape, healthy, release 1 at the tag's commit.
    let (out, dep) = project.status_json("web");
    out.ok();
    assert_eq!(dep["env"], ENV, "{dep:#}");
    let inst = check_status_shape(&dep);
    assert_eq!(inst["state"], "healthy", "{inst:#}");
    assert_eq!(inst["release"], 1, "{inst:#}");
    assert_eq!(inst["ref"], "v1.0.0", "{inst:#}");
    assert_eq!(inst["commit"], commit.as_str(), "{inst:#}");
    assert_eq!(inst["url"], format!("http://{ip}:8000"), "{inst:#}");
    assert_eq!(inst["restarts"], 0, "{inst:#}");
    assert!(
        inst["agent"]
            .as_str()
            .unwrap()
            .contains(&agent.grpc.to_string()),
        "{inst:#}"
    );
    let pid = inst["pid"].as_u64().expect("a healthy instance has a pid") as u32;
    assert!(pid_alive(pid), "status pid {pid} is not running");
    assert_eq!(
        agent.record("web").and_then(|r| r["pid"].as_u64()),
        Some(pid as u64)
    );

    // Status of everything, and the plain table, and list.
    let all = project.deployctl(&["status", "--output", "json"]);
    all.ok();
    assert!(
        all.json()["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "web"),
        "{all}"
    );
    project.deployctl(&["status"]).ok().mentions("web");
    project.deployctl(&["list"]).ok().mentions("web");

    // The agent's load-balancer endpoint agrees.
    let (code, body) =
        http_get(&agent.http_url("/deployments/web/health")).expect("agent HTTP answers");
    assert_eq!(code, 200, "{body}");
    let (code, _) =
        http_get(&agent.http_url("/deployments/nope/health")).expect("agent HTTP answers");
    assert_ne!(code, 200);
    assert_eq!(
        http_get(&agent.http_url("/healthz")).map(|r| r.0),
        Some(200)
    );
}

#[test]
fn deploy_at_short_and_full_commit() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let first = repo.commit_app("first", None);
    let second = repo.commit_app("second", None);
    repo.commit_app("third-on-main", None);

    // Short commit (of the first commit), given as a file:// URL.
    let short = &first[..8];
    let file_url = repo.file_url();
    run(&project, "api", &file_url, short, &[]).ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "first", "{served}");
    assert_eq!(served["commit"], first.as_str(), "{served}");
    let (_, dep) = project.status_json("api");
    let inst = check_status_shape(&dep);
    assert_eq!(inst["commit"], first.as_str(), "{inst:#}");
    assert_eq!(inst["release"], 1, "{inst:#}");

    // Full commit of the second one: release 2, and the app now serves it.
    run(&project, "api", &file_url, &second, &[]).ok();
    let mut served = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            served = get_json(&agent.app_url(8000, "/")).unwrap_or_default();
            served["marker"] == "second"
        }),
        "the app did not switch to the second commit: {served}"
    );
    assert_eq!(served["commit"], second.as_str(), "{served}");
    assert_eq!(served["release"], "2", "{served}");
    let (out, dep) = project.status_json("api");
    out.ok();
    let inst = check_status_shape(&dep);
    assert_eq!(inst["state"], "healthy", "{inst:#}");
    assert_eq!(inst["release"], 2, "{inst:#}");
    assert_eq!(inst["commit"], second.as_str(), "{inst:#}");
}

#[test]
fn start_script_writes_a_file_the_app_serves() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write_executable(
        "scripts/prepare.sh",
        "#!/bin/sh\nset -e\nmkdir -p data\necho \"prepared for $DEPLOYMENT_NAME at $GIT_COMMIT\" > data/prepared.txt\necho 'start script done'\n",
    );
    let commit = repo.commit_app("with-start-script", Some("v1"));

    run(
        &project,
        "prep",
        &repo.url(),
        "v1",
        &[
            "--start-script",
            "scripts/prepare.sh",
            "--env-var",
            "APP_FILE=data/prepared.txt",
        ],
    )
    .ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(
        served["file"],
        format!("prepared for prep at {commit}"),
        "{served}"
    );
    project.status_json("prep").0.ok();
}

#[test]
fn redeploy_with_new_ref_and_run_load() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    let two = repo.commit_app("two", Some("v2"));

    // A relative --repo is made absolute by the CLI.
    std::fs::create_dir_all(project.path().join("src")).unwrap();
    repo.git(&[
        "clone",
        "-q",
        &repo.url(),
        &project.path().join("src/app").to_string_lossy(),
    ]);
    run(&project, "rel", "src/app", "v1", &[]).ok();
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "one", "{served}");

    // Change one field: the declaration is updated, the rest kept.
    project
        .deployctl(&["run", "rel", "--env", ENV, "--ref", "v2"])
        .ok();
    let decl = project.read("rel.deploy.yaml");
    assert!(
        decl.contains("v2") && decl.contains("python3 app.py"),
        "rel.deploy.yaml:\n{decl}"
    );
    let (_, dep) = project.status_json("rel");
    let inst = check_status_shape(&dep);
    assert_eq!(inst["release"], 2, "{inst:#}");
    assert_eq!(inst["commit"], two.as_str(), "{inst:#}");

    // The declaration as is.
    project.deployctl(&["run", "--load", "rel"]).ok();
    let (out, dep) = project.status_json("rel");
    out.ok();
    let inst = check_status_shape(&dep);
    assert_eq!(inst["release"], 3, "{inst:#}");
    assert_eq!(inst["state"], "healthy", "{inst:#}");
    let served = wait_for_json(&agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "two", "{served}");
}

/// A relative `--repo` is kept relative in the declaration (portable, committable), and the
/// agent gets it normalised: two spellings of one repository are one mirror.
#[test]
fn a_relative_repo_is_kept_relative_and_is_one_mirror() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("rel", Some("v1"));
    let project_dir = std::fs::canonicalize(project.path()).unwrap();
    let repo_dir = std::fs::canonicalize(repo.path()).unwrap();
    // Both are temporary directories side by side: ../NAME from the project.
    assert_eq!(project_dir.parent(), repo_dir.parent());
    let name = repo_dir.file_name().unwrap().to_string_lossy().into_owned();
    let relative = format!("../{name}");
    let roundabout = format!("./../{name}/.");
    for (spelling, port) in [(&relative, "8000"), (&roundabout, "8001")] {
        project
            .deployctl(&[
                "run",
                &format!("rel-{port}"),
                "--repo",
                spelling,
                "--ref",
                "v1",
                "--port",
                port,
                "--command",
                "python3 app.py",
            ])
            .ok();
    }
    let declaration = project.read("rel-8000.deploy.yaml");
    assert!(
        declaration.contains(&format!("repo: ../{name}\n")),
        "{declaration}"
    );
    let mirrors: Vec<_> = std::fs::read_dir(agent.data_dir.join("git"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");
}
