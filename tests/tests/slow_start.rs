//! A model that takes a while to load: the deploy waits up to `health.startup_timeout`
//! (`timeout`, its old name, still read) and says every few seconds how it goes, with the
//! app's last line, instead of going quiet.

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// Loads its "model" for `LOAD_SECONDS` (a line per shard, every 4 s), then listens.
const SLOW_PY: &str = r#"import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seconds = float(os.environ.get("LOAD_SECONDS", "0"))
shards = max(1, int(seconds // 4))
for i in range(shards):
    print(f"Loading checkpoint shards {i + 1}/{shards}", flush=True)
    time.sleep(seconds / shards)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"marker": "loaded"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print("model loaded, listening", flush=True)
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

fn declaration(repo: &str, health: &str, load_seconds: u32) -> String {
    format!(
        "env: {ENV}\nrepo: {repo}\nref: v1\ncommand: python3 app.py\nenv_vars:\n  LOAD_SECONDS: {load_seconds}\nhealth:\n  path: /health\n{health}"
    )
}

#[test]
fn a_model_that_loads_for_40_s_deploys_within_its_startup_timeout_and_says_how_it_goes() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", SLOW_PY);
    repo.commit("a slow loader");
    repo.tag("v1");

    // `timeout` is still read: 3 s is too short for an 8 s load.
    project.write(
        "slow.deploy.yaml",
        &declaration(&repo.url(), "  timeout: 3s\n", 8),
    );
    project
        .deployctl(&["run", "slow"])
        .expect_code(1)
        .mentions("health")
        .mentions("3s");

    // `startup_timeout: 2m`: 40 s of loading is fine, and the deploy says how it goes.
    project.write(
        "slow.deploy.yaml",
        &declaration(&repo.url(), "  startup_timeout: 2m\n", 40),
    );
    let out = project.deployctl(&["run", "slow"]);
    out.ok()
        .mentions("still starting")
        .mentions("of 2m")
        .mentions("Loading checkpoint shards");
    let progress = out
        .all()
        .lines()
        .filter(|l| l.contains("still starting"))
        .count();
    assert!(progress >= 5, "a progress line every 5 s of 40: {out}");
    let (code, body) = http_get(&agent.app_url(8000, "/")).expect("it serves");
    assert_eq!((code, body.as_str()), (200, r#"{"marker": "loaded"}"#));
    let written = project.read("slow.deploy.yaml");
    assert!(written.contains("startup_timeout: 2m"), "{written}");
}
