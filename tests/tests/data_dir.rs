//! The agent's data directory is for the agent's eyes only: logs (which hold what apps
//! print, secrets included), records, secrets, `auth.toml`, `tls/` and the git mirrors are
//! 0700/0600. An agent with users never runs apps as itself: an app running as another user
//! can read none of it, and an agent that would run apps as its own user refuses to start
//! unless its config says so.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deployctl_e2e::*;

/// Serves what it could read of each path in $PROBE (`:`-separated): "read" or the error.
const PROBE_APP: &str = r#"import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

def probe(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path).read()
        return "read"
    except OSError as e:
        return type(e).__name__

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({p: probe(p) for p in os.environ["PROBE"].split(":")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            files_under(&p, out);
        }
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[test]
fn an_app_of_another_user_reads_nothing_of_the_agent() {
    require_root("apps run as another user only when the agent is root");
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("a nobody user");
    let ip = loopback();
    let mut tokens = Vec::new();
    let agent = Agent::start_prepared(&ip, "run_as = \"nobody\"\n", &[], |data| {
        tokens.push(token_in(&agent_admin(data, &["init", "--name", &ip])));
        // The test's temporary directory stands for /var/lib: others may pass through it.
        if let Some(parent) = data.parent() {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
    });
    let s = Secure {
        agent,
        tokens: [("admin".to_string(), tokens[0].clone())].into(),
    };
    let p = s.project_as(Some("admin"));
    let data = s.agent.data_dir.clone();
    p.write("secret.txt", "s3cr3t-value-91\n");
    p.deployctl(&[
        "secret",
        "set",
        "DB_PASSWORD",
        "--owner",
        "user:admin",
        "--from-file",
        "secret.txt",
    ])
    .ok();
    let repo = GitRepo::new();
    repo.write("app.py", PROBE_APP);
    repo.commit("probe");
    let targets = [
        data.join("secrets"),
        data.join("auth.toml"),
        data.join("tls"),
        data.join("tls/agent.key"),
        data.join("deployments/probe/logs/app.log"),
        data.join("deployments/probe/deployment.json"),
        data.join("git"),
        data.clone(),
    ];
    let probe: Vec<String> = targets.iter().map(|t| t.display().to_string()).collect();
    p.deployctl(&[
        "run",
        "probe",
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--secret",
        "DB_PASSWORD",
        "--env-var",
        &format!("PROBE={}", probe.join(":")),
    ])
    .ok();
    let seen = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(10));
    for t in &probe {
        assert_eq!(seen[t.as_str()], "PermissionError", "{t}: {seen:#}");
    }
    let pid: u32 = p.status_json("probe").1["instances"][0]["pid"]
        .as_u64()
        .expect("a pid") as u32;
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    assert_eq!(uid, nobody.uid.as_raw().to_string());

    // Nothing under the private parts has a bit for group or others.
    // (The git mirrors below git/ keep git's modes: git/ itself shuts them away.)
    let mut private = vec![data.join("git")];
    for part in ["secrets", "tls", "deployments/probe/logs"] {
        private.push(data.join(part));
        files_under(&data.join(part), &mut private);
    }
    private.push(data.join("auth.toml"));
    private.push(data.join("deployments/probe/deployment.json"));
    for path in &private {
        assert!(path.exists(), "{} is missing", path.display());
        assert_eq!(
            mode(path) & 0o077,
            0,
            "{} is {:o}",
            path.display(),
            mode(path)
        );
    }
    // The way down to the release: passable, not listable.
    for path in [
        data.clone(),
        data.join("deployments"),
        data.join("deployments/probe"),
    ] {
        assert_eq!(mode(&path), 0o711, "{}", path.display());
    }
}

#[test]
fn an_agent_never_runs_apps_where_they_could_read_its_keys() {
    let ip = loopback();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    agent_admin(&data, &["init", "--name", &ip]);
    // Not root: apps would run as the agent, which can read every owner's secrets. As root,
    // each deployment runs as its own user, who must reach the data directory: a closed one
    // (0700, like root's home) is refused, naming it.
    let root = nix::unistd::geteuid().is_root();
    if root {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let out = std::process::Command::new(agent_bin())
        .args([
            "--listen",
            &format!("{ip}:0"),
            "--http-listen",
            &format!("{ip}:0"),
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("running deploy-agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    if root {
        assert!(err.contains("data_dir"), "{err}");
        assert!(err.contains("closed to other users"), "{err}");
    } else {
        assert!(
            err.contains("apps must not run as the agent's own user"),
            "{err}"
        );
        assert!(err.contains("apps_as_agent_user = true"), "{err}");
    }
    // Said explicitly, it starts.
    let agent = Agent::start_prepared(&ip, "apps_as_agent_user = true\n", &[], |d| {
        agent_admin(d, &["init", "--name", &ip]);
    });
    assert!(agent.pid().is_some());
}
