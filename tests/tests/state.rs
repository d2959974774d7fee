//! The shared state: 32 concurrent `deployctl`s lose no update (file and etcd backends; 16
//! with S3, whose conditional writes all go through one object),
//! a lost state file is rebuilt from the agents, `config`, and bad input about envs and
//! state locations.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deployctl_e2e::*;

const WRITERS: usize = 32;

/// Starts WRITERS `deployctl run dN` at once against one agent, each with its own port,
/// and waits for all of them.
fn concurrent_deploys(project: &Project, repo: &GitRepo, first_port: u16) {
    concurrent_deploys_with(project, repo, first_port, WRITERS, &[]);
}

/// `writers` `deployctl run dN` at once, with variables `envs`.
fn concurrent_deploys_with(
    project: &Project,
    repo: &GitRepo,
    first_port: u16,
    writers: usize,
    envs: &[(&str, String)],
) {
    let children: Vec<(usize, Child)> = (0..writers)
        .map(|i| {
            let port = (first_port + i as u16).to_string();
            let child = Command::new(deployctl_bin())
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .args(["--project"])
                .arg(project.path())
                .args(["run", &format!("d{i}"), "--repo"])
                .arg(repo.url())
                .args(["--command", "python3 app.py", "--port", &port])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting deployctl");
            (i, child)
        })
        .collect();
    for (i, child) in children {
        let out = child.wait_with_output().expect("waiting for deployctl");
        assert!(
            out.status.success(),
            "deployctl run d{i} failed\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn assert_all_listed(project: &Project) {
    let out = project.deployctl(&["list", "--output", "json"]);
    out.ok();
    let list = out.json();
    let names: Vec<&str> = list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for i in 0..WRITERS {
        assert!(
            names.contains(&format!("d{i}").as_str()),
            "d{i} is missing: {names:?}"
        );
    }
    assert_eq!(names.len(), WRITERS);
}

#[test]
fn concurrent_writers_lose_nothing_in_the_state_file() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("many", None);
    concurrent_deploys(&project, &repo, 9100);
    assert_all_listed(&project);
    // The file itself is one valid JSON document with every deployment.
    let state: serde_json::Value =
        serde_json::from_str(&project.read(".deployctl/state.json")).expect("valid JSON");
    assert_eq!(state["deployments"].as_object().unwrap().len(), WRITERS);
    let (out, _) = project.status_json("d31");
    out.ok();
}

#[test]
fn concurrent_writers_lose_nothing_in_etcd() {
    let etcd_ip = loopback();
    let etcd = Etcd::start(&etcd_ip);
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let uri = format!("etcd://{}/e2e-team", etcd.client);
    project
        .deployctl(&["config", "set", "core.state.uri", &uri])
        .ok();
    project
        .deployctl(&["config", "get", "core.state.uri"])
        .ok()
        .mentions(&uri);
    let repo = GitRepo::new();
    repo.commit_app("many", None);
    concurrent_deploys(&project, &repo, 9200);
    assert_all_listed(&project);
    assert!(
        !project.path().join(".deployctl/state.json").exists(),
        "with etcd configured, no state file is written"
    );
    let out = project.deployctl(&["history", "d7", "--output", "json"]);
    out.ok();
    assert_eq!(out.json()["releases"][0]["result"], "ok");
    project.deployctl(&["remove", "d7"]).ok();
    let out = project.deployctl(&["list", "--output", "json"]);
    assert_eq!(
        out.json()["deployments"].as_array().unwrap().len(),
        WRITERS - 1
    );
}

#[test]
fn concurrent_writers_lose_nothing_in_s3() {
    const S3_WRITERS: usize = 16;
    let moto_ip = loopback();
    let moto = Moto::start(&moto_ip);
    moto.create_bucket("e2e-state");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let creds = moto.credentials();
    let envs: Vec<(&str, &str)> = creds.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ctl = |args: &[&str]| project.deployctl_in(project.path(), &envs, args, COMMAND_TIMEOUT);
    ctl(&["config", "set", "core.state.endpoint", &moto.endpoint]).ok();
    let uri = "s3://e2e-state/ml-team";
    ctl(&["config", "set", "core.state.uri", uri])
        .ok()
        .mentions(&format!("{uri} holds no deployments"));
    let repo = GitRepo::new();
    repo.commit_app("many", None);
    concurrent_deploys_with(&project, &repo, 9300, S3_WRITERS, &creds);
    let out = ctl(&["list", "--output", "json"]);
    out.ok();
    let names: Vec<String> = out.json()["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect();
    let expected: Vec<String> = (0..S3_WRITERS).map(|i| format!("d{i}")).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let mut wanted = expected.clone();
    wanted.sort();
    assert_eq!(sorted, wanted, "every run is recorded");
    // One object in the bucket, every deployment in it; no state file.
    let doc: serde_json::Value = serde_json::from_str(
        &moto
            .object("e2e-state", "ml-team/state.json")
            .expect("the object"),
    )
    .expect("valid JSON");
    assert_eq!(
        doc["deployments"].as_object().map(|d| d.len()),
        Some(S3_WRITERS)
    );
    assert!(!project.path().join(".deployctl/state.json").exists());
    let out = ctl(&["history", "d7", "--output", "json"]);
    out.ok();
    assert_eq!(out.json()["releases"][0]["result"], "ok");
    ctl(&["remove", "d7"]).ok();
    let out = ctl(&["list", "--output", "json"]);
    assert_eq!(
        out.json()["deployments"].as_array().unwrap().len(),
        S3_WRITERS - 1
    );
}

#[test]
fn etcd_down_is_a_clear_error_and_changes_nothing() {
    // No etcd listens on this address of the test's own.
    let down = loopback();
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    // Nothing listens there: switching to it is refused (state_copy.rs), unless forced.
    project
        .deployctl(&[
            "config",
            "set",
            "core.state.uri",
            &format!("etcd://{down}:2379/x"),
            "--force",
        ])
        .ok();
    let out = project.deployctl(&["list"]);
    out.expect_code(1)
        .mentions("etcd")
        .mentions(&format!("{down}:2379"));
    project
        .deployctl(&["config", "set", "core.state.uri", "s3://Not_A_Bucket/x"])
        .expect_code(2)
        .mentions("core.state.uri")
        .mentions("BUCKET");
    project
        .deployctl(&["config", "get", "core.state.uri"])
        .ok()
        .mentions(&format!("etcd://{down}:2379/x"));
    project
        .deployctl(&["config", "set", "core.nope", "1"])
        .expect_code(2)
        .mentions("core.nope");
}

#[test]
fn a_lost_state_file_is_rebuilt_from_the_agents() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    let commit = repo.commit_app("kept", Some("v1"));
    for (name, port) in [("one", "8000"), ("two", "8001")] {
        project
            .deployctl(&[
                "run",
                name,
                "--repo",
                &repo.url(),
                "--ref",
                "v1",
                "--command",
                "python3 app.py",
                "--port",
                port,
            ])
            .ok();
    }
    std::fs::remove_file(project.path().join(".deployctl/state.json")).unwrap();
    std::fs::remove_file(project.path().join("two.deploy.yaml")).unwrap();
    let out = project.deployctl(&["list", "--output", "json"]);
    assert_eq!(out.json()["deployments"].as_array().unwrap().len(), 0);

    // Plain status already shows what the agents run; --refresh writes it back.
    let out = project.deployctl(&["status", "--refresh"]);
    out.ok()
        .mentions("one")
        .mentions("two")
        .mentions("2 deployment(s) added");
    let out = project.deployctl(&["list", "--output", "json"]);
    let list = out.json();
    assert_eq!(list["deployments"].as_array().unwrap().len(), 2, "{list:#}");
    let (out, dep) = project.status_json("two");
    out.ok();
    assert_eq!(dep["instances"][0]["commit"], commit.as_str());
    // The rebuilt state is enough to manage it: remove works without a declaration file.
    project.deployctl(&["remove", "two"]).ok();
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(&agent.app_url(8001, "/")).is_none()
    }));
}

#[test]
fn bad_env_input_names_the_problem() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.commit_app("x", None);
    let run = |env: &str| {
        project.deployctl(&[
            "run",
            "svc",
            "--env",
            env,
            "--repo",
            &repo.url(),
            "--command",
            "python3 app.py",
        ])
    };
    // An env that is not declared: exit 2, named.
    run("prod")
        .expect_code(2)
        .mentions("prod")
        .mentions("not declared");
    assert!(!project.path().join("svc.deploy.yaml").exists());
    // An unknown field in an env declaration: exit 2, the field named.
    project.write(
        "typo.env.yaml",
        "object_type: env\ntype: agent\naddresses: [http://127.0.0.1:1]\ntokenfile: x\n",
    );
    run("typo").expect_code(2).mentions("tokenfile");
    // An address that does not answer: exit 1, the address named.
    project
        .deployctl(&[
            "declare",
            "env",
            "agent",
            "dead",
            "--address",
            &format!("http://{ip}:9"),
        ])
        .ok();
    run("dead")
        .expect_code(1)
        .mentions(&format!("{ip}:9"))
        .mentions("does not answer");
    // A bad address in `declare env`: exit 2.
    project
        .deployctl(&["declare", "env", "agent", "bad", "--address", "nowhere"])
        .expect_code(2)
        .mentions("--address");
    assert!(!Path::new(&project.path().join("bad.env.yaml")).exists());
    let out = project.deployctl(&["list", "--output", "json"]);
    assert_eq!(
        out.json()["deployments"].as_array().unwrap().len(),
        0,
        "state unchanged"
    );
}
