//! `remove NAME` deletes the deployment's own directory (`DATA_DIR`) on each agent;
//! `remove NAME --keep-data` keeps it (and says so), for the same owner's next deployment
//! of NAME to find; nobody else can deploy the name over it or remove it.

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

/// The standard app, started after the release is noted in `$DATA_DIR/starts.txt`.
const COMMAND: &str =
    r#"echo "$DEPLOYMENT_RELEASE" >> "$DATA_DIR/starts.txt" && exec python3 app.py"#;

#[test]
fn remove_deletes_data_dir_unless_keep_data() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[], "");
    let (alice, bob) = (s.project_as(Some("alice")), s.project_as(Some("bob")));
    let repo = GitRepo::new();
    repo.commit_app("keeper", None);
    let url = repo.url();
    let dir = s.agent.data_dir.join("deployments/keeper");
    // The app serves what the file held when it started.
    let file = format!("APP_FILE={}", dir.join("data/starts.txt").display());
    let deploy = |who: &Project| {
        let args = ["run", "keeper", "--repo", &url, "--command", COMMAND];
        who.deployctl(&[&args[..], &["--env-var", file.as_str()]].concat())
    };
    let starts = || -> usize {
        let seen: Value = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(20));
        let file = seen["file"].as_str().unwrap_or_default();
        file.split_whitespace().count()
    };
    deploy(&alice).ok();
    assert_eq!(starts(), 1);

    let kept = alice.deployctl(&["remove", "keeper", "--keep-data", "--drain", "0s"]);
    kept.ok().mentions("DATA_DIR kept (").mentions(&format!(
        "{}): deploying keeper again finds it",
        dir.join("data").display()
    ));
    assert!(dir.join("data/starts.txt").is_file(), "the data stays");
    for gone in ["releases", "logs", "deployment.json"] {
        assert!(!dir.join(gone).exists(), "{gone} is deleted");
    }
    alice.deployctl(&["status", "keeper"]).expect_code(1);

    // Kept for its owner: another one can neither take the name nor delete the data.
    deploy(&bob)
        .expect_code(1)
        .mentions("the name \"keeper\" is not available");
    bob.deployctl(&["remove", "keeper"]).expect_code(1);
    assert!(dir.join("data/starts.txt").is_file(), "bob deleted nothing");

    // The owner deploys it again: the new release finds what the removed one wrote.
    deploy(&alice).ok();
    assert_eq!(starts(), 2, "the kept DATA_DIR is back");

    // Without the flag, the data goes with the rest, and the output says so.
    let removed = alice.deployctl(&["remove", "keeper", "--drain", "0s"]);
    removed.ok().mentions("DATA_DIR deleted (");
    assert!(!dir.exists(), "nothing of keeper is left");
    deploy(&alice).ok();
    assert_eq!(
        starts(),
        1,
        "a new deployment of the name starts with an empty DATA_DIR"
    );
    let json = alice.deployctl(&["remove", "keeper", "--keep-data", "--output", "json"]);
    let data = json.ok().json()["instances"][0]["data"].clone();
    assert_eq!(data["kept"], true, "{data}");
    assert!(data["bytes"].as_u64().unwrap_or(0) > 0, "{data}");

    // Kept data of no deployment: its owner deletes it with a plain remove.
    alice
        .deployctl(&["remove", "keeper"])
        .ok()
        .mentions("DATA_DIR deleted (");
    assert!(!dir.exists(), "the kept data is deleted");
}
