//! `remove NAME` deletes the deployment's own directory (`DATA_DIR`) on each agent;
//! `remove NAME --keep-data` keeps it (and says so), for the same owner's next deployment
//! of NAME to find; nobody else can deploy the name over it or remove it.

use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

/// Appends its start to `$DATA_DIR/starts.txt` and serves what the file holds.
const APP: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
path = os.path.join(os.environ["DATA_DIR"], "starts.txt")
with open(path, "a") as f:
    f.write(os.environ["DEPLOYMENT_RELEASE"] + "\n")
starts = open(path).read().split()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"starts": starts, "uid": os.getuid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

#[test]
fn remove_deletes_data_dir_unless_keep_data() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[], "");
    let (alice, bob) = (s.project_as(Some("alice")), s.project_as(Some("bob")));
    let repo = GitRepo::new();
    repo.write("app.py", APP);
    repo.commit("counts its starts in DATA_DIR");
    let url = repo.url();
    let deploy = |who: &Project| {
        who.deployctl(&[
            "run",
            "keeper",
            "--repo",
            &url,
            "--command",
            "python3 app.py",
        ])
    };
    let served =
        || -> Value { wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(20)) };
    deploy(&alice).ok();
    assert_eq!(served()["starts"].as_array().map(Vec::len), Some(1));

    let dir = s.agent.data_dir.join("deployments/keeper");
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
    let again = served();
    assert_eq!(
        again["starts"].as_array().map(Vec::len),
        Some(2),
        "the kept DATA_DIR is back: {again}"
    );

    // Without the flag, the data goes with the rest, and the output says so.
    let removed = alice.deployctl(&["remove", "keeper", "--drain", "0s"]);
    removed.ok().mentions("DATA_DIR deleted (");
    assert!(!dir.exists(), "nothing of keeper is left");
    deploy(&alice).ok();
    assert_eq!(
        served()["starts"].as_array().map(Vec::len),
        Some(1),
        "a new deployment of the name starts with an empty DATA_DIR"
    );
    let json = alice.deployctl(&["remove", "keeper", "--keep-data", "--output", "json"]);
    let data = json.ok().json()["instances"][0]["data"].clone();
    assert_eq!(data["kept"], true, "{data}");
    assert!(data["bytes"].as_u64().unwrap_or(0) > 0, "{data}");
}
