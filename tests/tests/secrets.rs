//! Secrets that reach the app and nothing else: not the logs, the records, the deploy's
//! output or another owner's app; cloning to a group needs the group's own secrets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deployctl_e2e::*;

const SECRET: &str = "correct-horse-battery-staple-42";

/// Serves the SHA-256 of $DB_PASSWORD, and (carelessly) prints the password.
const SECRET_APP: &str = r#"import hashlib, json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
pw = os.environ.get("DB_PASSWORD", "")
print("connecting to the database with password " + pw, flush=True)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"sha256": hashlib.sha256(pw.encode()).hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

fn sha256_hex(s: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest())",
            s,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

#[test]
fn a_secret_reaches_the_app_and_nowhere_else() {
    let ip = loopback();
    let s = secure_agent(&ip, &[], &[], "");
    let p = s.project_as(Some("admin"));
    p.write("secret.txt", &format!("{SECRET}\n"));
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
    std::fs::remove_file(p.path().join("secret.txt")).unwrap();
    let listed = p.deployctl(&["secret", "list", "--owner", "user:admin"]);
    listed.ok().mentions("DB_PASSWORD");
    assert!(!listed.all().contains(SECRET));

    let repo = GitRepo::new();
    repo.write("app.py", SECRET_APP);
    repo.write_executable("leak.sh", "echo \"the password is $DB_PASSWORD\"\nexit 3\n");
    repo.commit("app");
    let out = p.deployctl(&[
        "run",
        "db",
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--secret",
        "DB_PASSWORD",
        "--output",
        "json",
    ]);
    out.ok();
    assert!(!out.all().contains(SECRET), "events leak the secret\n{out}");
    let served = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(
        served["sha256"],
        sha256_hex(SECRET),
        "the app got the secret"
    );

    let status = p.deployctl(&["status", "db", "--output", "json"]);
    status.ok();
    assert!(!status.all().contains(SECRET));
    let logs = p.deployctl(&["logs", "db", "-n", "20"]);
    logs.ok()
        .mentions("connecting to the database with password [redacted]");
    assert!(!logs.all().contains(SECRET), "{logs}");

    // A start script that echoes it and fails: the error tail is redacted too.
    let failed = p.deployctl(&["run", "db", "--start-script", "leak.sh"]);
    failed.expect_code(1).mentions("the password is [redacted]");
    assert!(!failed.all().contains(SECRET), "{failed}");
    p.deployctl(&["logs", "db", "--deploy", "-n", "200"]).ok();
    let deploy_log = p.deployctl(&["logs", "db", "--deploy", "-n", "200"]);
    assert!(!deploy_log.all().contains(SECRET), "{deploy_log}");

    // Not in the state file, the declaration, or any file of the agent but the store's.
    let mut files = Vec::new();
    files_under(p.path(), &mut files);
    files_under(&s.agent.data_dir.join("deployments"), &mut files);
    for f in files.iter().filter(|f| !f.ends_with("app.log")) {
        let text = std::fs::read(f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains(SECRET),
            "{} holds the secret",
            f.display()
        );
    }
    let store = s.agent.data_dir.join("secrets/user_admin/DB_PASSWORD");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&store).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn cloning_to_a_group_needs_the_groups_secrets() {
    let ip = loopback();
    let s = secure_agent(&ip, &["alice", "bob"], &[("ml", &["alice", "bob"])], "");
    let p = s.project_as(Some("alice"));
    p.write("v.txt", SECRET);
    p.deployctl(&[
        "secret",
        "set",
        "DB_PASSWORD",
        "--owner",
        "user:alice",
        "--from-file",
        "v.txt",
    ])
    .ok();
    let repo = GitRepo::new();
    repo.write("app.py", SECRET_APP);
    repo.commit("app");
    p.deployctl(&[
        "run",
        "db",
        "--repo",
        &repo.url(),
        "--command",
        "python3 app.py",
        "--secret",
        "DB_PASSWORD",
    ])
    .ok();
    // The copy runs beside the original on the same agent, so on its own port.
    let clone = || {
        p.deployctl(&[
            "clone", "db", "db-ml", "--owner", "group:ml", "--port", "8001",
        ])
    };
    let out = clone();
    out.expect_code(1)
        .mentions("group:ml")
        .mentions("secret DB_PASSWORD");
    assert!(
        !p.path().join("db-ml.deploy.yaml").exists(),
        "a refused clone writes nothing"
    );
    p.deployctl(&[
        "secret",
        "set",
        "DB_PASSWORD",
        "--owner",
        "group:ml",
        "--from-file",
        "v.txt",
    ])
    .ok();
    clone().ok();
    let served = wait_for_json(&s.agent.app_url(8001, "/"), Duration::from_secs(10));
    assert_eq!(served["sha256"], sha256_hex(SECRET));
    // The group owns it: another member manages it.
    let bob = s.project_as(Some("bob"));
    let (out, dep) = bob.status_json("db-ml");
    out.ok();
    assert_eq!(dep["owner"], "group:ml");
    bob.deployctl(&["status", "db"]).expect_code(1);
}
