//! Model and package caches outlive releases: `HF_HOME`, `TORCH_HOME` and `XDG_CACHE_HOME`
//! are in the deployment's own directory (its identity's alone), so what one release
//! downloaded the next release, a rollback and a restart find; `status NAME` shows them.

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "caches";

/// Counts its starts in a file under `HF_HOME` and serves the count and its cache paths.
const APP: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
hub = os.path.join(os.environ["HF_HOME"], "hub")
os.makedirs(hub, exist_ok=True)
seen = os.path.join(hub, "starts")
n = int(open(seen).read()) + 1 if os.path.exists(seen) else 1
open(seen, "w").write(str(n))
info = {"starts": n, "data": os.environ["DATA_DIR"]}
for v in ("HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME"):
    info[v] = os.environ[v]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(info).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

#[test]
fn caches_outlive_releases_rollbacks_and_restarts() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", APP);
    repo.commit("counts its starts in its cache");
    let url = repo.url();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "model",
            "--repo",
            &url,
            "--command",
            "python3 app.py",
        ];
        args.extend_from_slice(extra);
        project.deployctl(&args).ok();
    };
    let served = || -> Value {
        wait_for_json(
            &agent.app_url(8000, "/"),
            std::time::Duration::from_secs(10),
        )
    };
    run(&[]);
    let first = served();
    assert_eq!(first["starts"], 1, "{first}");
    let data = first["data"].as_str().unwrap_or_default().to_string();
    for v in ["HF_HOME", "TORCH_HOME", "XDG_CACHE_HOME"] {
        assert!(
            first[v].as_str().is_some_and(|p| p.starts_with(&data)),
            "{v} is in the deployment's own directory: {first}"
        );
    }
    run(&["--env-var", "RELEASE=2"]);
    assert_eq!(served()["starts"], 2, "the next release finds the cache");
    project.deployctl(&["rollback", "model"]).ok();
    assert_eq!(served()["starts"], 3, "a rollback finds it");
    project.deployctl(&["restart", "model"]).ok();
    assert_eq!(served()["starts"], 4, "a restart finds it");

    // `status NAME` says where DATA_DIR is and what it and its caches hold: the cache's
    // one-byte counter ("4") is all there is.
    let (_, status) = project.status_json("model");
    let instance = &status["instances"][0];
    assert_eq!(instance["data_dir"], data.as_str(), "{status}");
    assert_eq!(instance["data_bytes"], 1, "{status}");
    assert_eq!(instance["cache_bytes"], 1, "{status}");
    project
        .deployctl(&["status", "model"])
        .mentions(&format!("DATA_DIR {data}: 1 B (its caches"));
    // A status of every deployment does not walk their directories.
    let all = project.deployctl(&["status", "--output", "json"]).json();
    let listed = &all["deployments"][0]["instances"][0];
    assert_eq!(listed["data_dir"], data.as_str(), "{all}");
    assert!(listed["data_bytes"].is_null(), "{all}");
}
