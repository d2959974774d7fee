//! Artifacts share the venvs' keep budget (`venv_keep_bytes`): what a kept release uses
//! stays whatever its size; unused ones stay while they fit, then the least recently used
//! goes first; `deployctl nodes` shows how many there are and their size.

use std::path::Path;
use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Two 4 MiB files of different content under `dir/files`: their hashes.
fn make_files(dir: &Path) -> [String; 2] {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    ["x.bin", "y.bin"].map(|name| {
        let seed = name.as_bytes()[0] as u32;
        let data: Vec<u8> = (0..4 * MIB as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 11) as u8)
            .collect();
        std::fs::write(files.join(name), &data).expect("writing a file");
        sha256(&files.join(name))
    })
}

fn artifacts_of(project: &Project) -> Value {
    project.deployctl(&["nodes", "--output", "json"]).json()["nodes"][0]["artifacts"].clone()
}

/// Waits for the collection after a deploy or removal to count `in_use` and `unused`.
fn counted(project: &Project, in_use: u64, unused: u64) -> Value {
    let mut seen = Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        seen = artifacts_of(project);
        (seen["in_use"].as_u64(), seen["unused"].as_u64()) == (Some(in_use), Some(unused))
    });
    assert!(
        ok,
        "nodes shows {in_use} in use and {unused} unused: {seen}"
    );
    seen
}

#[test]
fn unused_artifacts_fit_the_venvs_budget_least_recently_used_first() {
    let ip = loopback();
    // Room for one unused 4 MiB file, not two.
    let agent = Agent::start_with(&ip, &format!("venv_keep_bytes = {}\n", 6 * MIB), &[]);
    let project = Project::for_agent("budget", &agent);
    let work = tempfile::tempdir().expect("a directory for the file server");
    let [x, y] = make_files(work.path());
    let server = ModelServer::start(&ip, work.path(), "");
    let repo = GitRepo::new();
    repo.commit_app("budget", None);
    let url = repo.url();
    let deploy = |name: &str, port: &str, file: &str, hash: &str| {
        let artifact = format!("{file}={}/{file}#sha256={hash}", server.base);
        project.deployctl(&[
            "run",
            name,
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--port",
            port,
            "--artifact",
            &artifact,
        ])
    };
    let store = agent.data_dir.join("artifacts/sha256");
    deploy("a", "8000", "x.bin", &x)
        .ok()
        .mentions("x.bin 4 MiB fetched");
    deploy("b", "8001", "y.bin", &y)
        .ok()
        .mentions("y.bin 4 MiB fetched");
    // In use: both stay although together they are past the budget.
    let both = counted(&project, 2, 0);
    assert!(
        both["in_use_bytes"].as_u64().unwrap_or(0) >= 8 * MIB,
        "nodes shows their size: {both}"
    );
    assert!(store.join(&x).is_file() && store.join(&y).is_file());

    // Unused, x fits the budget: it stays, counted as unused with its size.
    project.deployctl(&["remove", "a", "--drain", "0s"]).ok();
    let one = counted(&project, 1, 1);
    assert!(
        one["unused_bytes"].as_u64().unwrap_or(0) >= 4 * MIB,
        "nodes shows the unused size: {one}"
    );
    assert!(
        store.join(&x).is_file(),
        "an unused artifact within the budget stays"
    );

    // Both unused do not fit: x, used longest ago, goes; y stays.
    project.deployctl(&["remove", "b", "--drain", "0s"]).ok();
    counted(&project, 0, 1);
    assert!(!store.join(&x).exists(), "the least recently used went");
    assert!(store.join(&y).is_file(), "the most recently used stayed");

    // What went is downloaded again; what stayed is reused.
    let before = server.requests().len();
    deploy("c", "8002", "y.bin", &y)
        .ok()
        .mentions("y.bin 4 MiB reused");
    assert_eq!(
        server.requests().len(),
        before,
        "y was not downloaded again"
    );
    deploy("d", "8003", "x.bin", &x)
        .ok()
        .mentions("x.bin 4 MiB fetched");
    assert_eq!(
        server.requests().len(),
        before + 1,
        "x was downloaded again"
    );
}
