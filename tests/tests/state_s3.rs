//! The S3 state backend against moto (a real S3-compatible server that checks signatures
//! here): `config set core.state.uri s3://...` says what it found, or names the endpoint and
//! what is wrong (a missing bucket, credentials it refuses); `state copy` to and from S3;
//! a writer killed mid-change leaves the previous state readable.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deployctl_e2e::*;
use serde_json::Value;

/// `deployctl ARGS` in `project` with variables `envs`.
fn ctl(project: &Project, envs: &[(&str, String)], args: &[&str]) -> Output {
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    project.deployctl_in(project.path(), &envs, args, COMMAND_TIMEOUT)
}

fn names(out: &Output) -> Vec<String> {
    out.ok();
    out.json()["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn switching_to_s3_checks_the_bucket_and_state_copy_moves_records_both_ways() {
    let moto_ip = loopback();
    let moto = Moto::start_with_auth(&moto_ip, "team-state");
    let (_ip, _agent, project, repo) = iris_deployed();
    let good = moto.credentials();
    let mut endpoint_env = good.clone();
    endpoint_env.push(("AWS_ENDPOINT_URL", moto.endpoint.clone()));

    // A bucket that does not exist: refused, the endpoint and the bucket named.
    ctl(
        &project,
        &endpoint_env,
        &["config", "set", "core.state.uri", "s3://no-such-bucket/x"],
    )
    .expect_code(1)
    .mentions("the bucket \"no-such-bucket\" does not exist")
    .mentions(&moto.endpoint)
    .mentions("unchanged");
    // Credentials the store refuses: said, naming the endpoint and the variables.
    let mut wrong = endpoint_env.clone();
    wrong[1].1 = "not-the-secret".into();
    ctl(
        &project,
        &wrong,
        &["config", "set", "core.state.uri", "s3://team-state/ml"],
    )
    .expect_code(1)
    .mentions(&format!("{} refused the credentials", moto.endpoint))
    .mentions("AWS_SECRET_ACCESS_KEY");
    // No credentials at all for an S3-compatible endpoint: bad input, the variables named.
    let none = vec![("AWS_ENDPOINT_URL", moto.endpoint.clone())];
    ctl(
        &project,
        &none,
        &["config", "set", "core.state.uri", "s3://team-state/ml"],
    )
    .expect_code(2)
    .mentions("AWS_ACCESS_KEY_ID");
    project
        .deployctl(&["config", "get", "core.state.uri"])
        .ok()
        .mentions(".deployctl/state.json");

    // The right ones: it says what it found, and how to copy what the file has.
    let uri = "s3://team-state/ml";
    let out = ctl(
        &project,
        &endpoint_env,
        &["config", "set", "core.state.uri", uri],
    );
    out.ok()
        .mentions(&format!("{uri} holds no deployments"))
        .mentions("deployctl state copy --from .deployctl/state.json");
    ctl(
        &project,
        &endpoint_env,
        &["state", "copy", "--from", ".deployctl/state.json"],
    )
    .ok()
    .mentions("copied iris (1 release)");
    let out = ctl(
        &project,
        &endpoint_env,
        &["history", "iris", "--output", "json"],
    );
    out.ok();
    assert_eq!(out.json()["releases"][0]["result"], "ok");
    // A deploy with S3 as the state, then S3 into a file.
    repo.commit_app("two", Some("v2"));
    let deploy = [
        "run",
        "iris",
        "--ref",
        "v2",
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--port",
        "8000",
    ];
    ctl(&project, &endpoint_env, &deploy).ok();
    ctl(
        &project,
        &endpoint_env,
        &["state", "copy", "--to", "backup.json"],
    )
    .ok()
    .mentions("copied iris (2 releases");
    let doc: Value = serde_json::from_str(&project.read("backup.json")).expect("JSON");
    assert_eq!(
        doc["deployments"]["iris"]["history"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn a_writer_killed_mid_change_leaves_the_previous_state_readable() {
    let moto_ip = loopback();
    let moto = Moto::start(&moto_ip);
    moto.create_bucket("killed");
    let (_ip, _agent, project, _repo) = iris_deployed();
    // A big state to copy in (a few MB), so a write takes a while.
    let mut doc: Value =
        serde_json::from_str(&project.read(".deployctl/state.json")).expect("JSON");
    let iris = doc["deployments"]["iris"].clone();
    for i in 0..3000 {
        doc["deployments"][format!("big{i}")] = iris.clone();
    }
    project.write("big.json", &doc.to_string());
    let mut envs = moto.credentials();
    envs.push(("AWS_ENDPOINT_URL", moto.endpoint.clone()));
    ctl(
        &project,
        &envs,
        &["config", "set", "core.state.uri", "s3://killed/team"],
    )
    .ok();
    ctl(
        &project,
        &envs,
        &["state", "copy", "--from", ".deployctl/state.json"],
    )
    .ok();

    // Writers killed at different moments of their change: the state is the previous one
    // (or the whole new one), never torn.
    for delay_ms in [30u64, 80, 150, 250, 400, 600] {
        let mut child = Command::new(deployctl_bin())
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .args(["--project"])
            .arg(project.path())
            .args(["state", "copy", "--from", "big.json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting deployctl");
        let started = Instant::now();
        // Not a wait for something: the moment the writer is killed, wherever it is then.
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().expect("deployctl").is_some();
        let _ = child.kill();
        let _ = child.wait();
        let list = names(&ctl(&project, &envs, &["list", "--output", "json"]));
        assert!(
            list.contains(&"iris".to_string()),
            "after {delay_ms} ms: {list:?}"
        );
        assert!(
            list.len() == 1 || list.len() == 3001,
            "killed after {:?} (finished: {finished}): {} deployments",
            started.elapsed(),
            list.len()
        );
        if list.len() == 3001 {
            break;
        }
    }
    // A writer that is not killed gets everything in, and iris is intact.
    ctl(&project, &envs, &["state", "copy", "--from", "big.json"]).ok();
    assert_eq!(
        names(&ctl(&project, &envs, &["list", "--output", "json"])).len(),
        3001
    );
    ctl(&project, &envs, &["history", "iris"])
        .ok()
        .mentions("v1");
}
