//! Safe for a team: TLS and bearer tokens, users and groups owning deployments, secrets
//! that reach the app and nothing else, a private repository over real HTTP with basic
//! auth, cloning to a group, and an agent that refuses to be exposed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deployctl_e2e::*;

fn deploy(p: &Project, repo: &GitRepo, name: &str, extra: &[&str]) -> Output {
    let url = repo.url();
    let mut args = vec![
        "run",
        name,
        "--repo",
        &url,
        "--command",
        "python3 app.py",
        "--health-path",
        "/health",
    ];
    args.extend_from_slice(extra);
    p.deployctl(&args)
}

#[test]
fn tokens_are_required_checked_and_revocable() {
    let ip = loopback();
    let s = secure_agent(&ip, &["temp"], &[], "");
    let none = s.project_as(None);
    none.deployctl(&["nodes"])
        .expect_code(1)
        .mentions("requires a token");
    let wrong = s.project_as(Some("dat_not-a-real-token"));
    wrong
        .deployctl(&["nodes"])
        .expect_code(1)
        .mentions("refused");
    s.project_as(Some("admin")).deployctl(&["nodes"]).ok();

    // A removed user's token stops working (the agent reloads its users).
    let temp = s.project_as(Some("temp"));
    temp.deployctl(&["nodes"]).ok();
    agent_admin(&s.agent.data_dir, &["user", "rm", "temp"]);
    assert!(
        wait_until(Duration::from_secs(10), || temp.deployctl(&["nodes"]).code
            == 1),
        "the removed user's token should be refused"
    );
    // An expired token is refused too.
    let out = agent_admin(
        &s.agent.data_dir,
        &["user", "add", "brief", "--expires", "2s"],
    );
    let brief = s.project_with_token(&token_in(&out));
    assert!(
        wait_until(Duration::from_secs(15), || brief.deployctl(&["nodes"]).code
            == 1),
        "an expired token should be refused"
    );
    // The token is stored only as a hash.
    let auth = std::fs::read_to_string(s.agent.data_dir.join("auth.toml")).unwrap();
    assert!(!auth.contains(&s.tokens["admin"]), "{auth}");
    // Plain HTTP to the TLS port does not get through.
    let plain = Project::new();
    plain
        .deployctl(&[
            "declare",
            "env",
            "agent",
            "e2e",
            "--address",
            &s.agent.address(),
        ])
        .ok();
    plain.deployctl(&["nodes", "--env", "e2e"]).expect_code(1);
}

#[test]
fn the_agent_refuses_an_open_port_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(agent_bin())
        .args([
            "--listen",
            "0.0.0.0:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("refusing to listen on 0.0.0.0") && err.contains("init"),
        "{err}"
    );
}

#[test]
fn a_group_owns_its_deployments() {
    let ip = loopback();
    let s = secure_agent(
        &ip,
        &["alice", "bob", "carol"],
        &[("ml", &["alice", "bob"])],
        "",
    );
    let (alice, bob, carol, admin) = (
        s.project_as(Some("alice")),
        s.project_as(Some("bob")),
        s.project_as(Some("carol")),
        s.project_as(Some("admin")),
    );
    let repo = GitRepo::new();
    repo.commit_app("team", None);
    deploy(&alice, &repo, "shared", &["--owner", "group:ml"]).ok();
    // Without a declared owner, the caller owns it.
    deploy(&alice, &repo, "mine", &["--port", "8001"]).ok();
    let (_, dep) = alice.status_json("mine");
    assert_eq!(dep["owner"], "user:alice", "{dep:#}");

    // A member of the group sees and manages it.
    let (out, dep) = bob.status_json("shared");
    out.ok();
    assert_eq!(dep["owner"], "group:ml");
    bob.deployctl(&["logs", "shared", "-n", "5"])
        .ok()
        .mentions("app team listening");
    bob.deployctl(&["status", "mine"])
        .expect_code(1)
        .mentions("not found");

    // Someone else: not found, never its details; cannot remove or take it over.
    let out = carol.deployctl(&["status", "shared"]);
    out.expect_code(1).mentions("not found");
    assert!(!out.all().contains(&format!("{ip}:8000")), "{out}");
    carol
        .deployctl(&["logs", "shared"])
        .expect_code(1)
        .mentions("not found");
    carol.deployctl(&["remove", "shared"]).expect_code(1);
    deploy(&carol, &repo, "shared", &["--owner", "group:ml"])
        .expect_code(1)
        .mentions("permission denied");
    deploy(&carol, &repo, "shared", &["--port", "8002"])
        .expect_code(1)
        .mentions("permission denied");
    let listed = carol.deployctl(&["status", "--output", "json"]);
    assert!(!listed.stdout.contains("shared"), "{listed}");
    // Still serving after all that.
    assert_eq!(
        wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(5))["marker"],
        "team"
    );
    // alice may not deploy in bob's name.
    deploy(
        &alice,
        &repo,
        "forged",
        &["--owner", "user:bob", "--port", "8003"],
    )
    .expect_code(1)
    .mentions("permission denied");

    // The admin sees everything and may remove it.
    admin.deployctl(&["status", "shared"]).ok();
    admin.deployctl(&["remove", "shared"]).ok();
}

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

/// `git http-backend` behind basic auth on the test's own address.
struct GitServer {
    child: Child,
    url: String,
    _root: tempfile::TempDir,
}

impl GitServer {
    fn start(ip: &str, repo: &GitRepo, user: &str, password: &str) -> GitServer {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("private.git");
        let ok = Command::new("git")
            .args(["clone", "--quiet", "--bare"])
            .arg(repo.path())
            .arg(&bare)
            .status()
            .unwrap();
        assert!(ok.success());
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/git_http_auth.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root.path())
            .args([user, password, ip])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("git server said {line:?}"));
        GitServer {
            child,
            url: format!("http://{ip}:{port}/private.git"),
            _root: root,
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_private_repository_needs_the_owners_credential() {
    let ip = loopback();
    let s = secure_agent(&ip, &[], &[], "");
    let p = s.project_as(Some("admin"));
    let repo = GitRepo::new();
    repo.commit_app("private", Some("v1"));
    let server = GitServer::start(&ip, &repo, "deployer", "s3cret-pass");
    let run = || {
        p.deployctl(&[
            "run",
            "priv",
            "--repo",
            &server.url,
            "--ref",
            "v1",
            "--command",
            "python3 app.py",
        ])
    };
    let out = run();
    out.expect_code(1)
        .mentions("resolve")
        .mentions("credential");
    // The owner's https credential, user:password, from a file.
    let set_credential = |value: &str| {
        p.write("cred.txt", value);
        p.deployctl(&[
            "secret",
            "set",
            "GIT_HTTPS",
            "--kind",
            "git-https",
            "--owner",
            "user:admin",
            "--from-file",
            "cred.txt",
        ])
        .ok();
    };
    set_credential("deployer:s3cret-pass");
    let out = run();
    out.ok();
    assert!(!out.all().contains("s3cret-pass"));
    let served = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "private");
    // A wrong credential is refused, clearly, and the running release stays.
    set_credential("deployer:wrong");
    repo.commit_app("private2", Some("v2"));
    let out = p.deployctl(&["run", "priv", "--ref", "v1"]);
    out.expect_code(1).mentions("refused");
    assert_eq!(
        wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(5))["marker"],
        "private"
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

/// A real sshd on the test's own address, with a host key and one authorized user key.
struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    ip: String,
}

impl Sshd {
    fn keygen(path: &Path) {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
            .arg(path)
            .status()
            .expect("ssh-keygen");
        assert!(ok.success());
    }

    fn start(ip: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        Sshd::keygen(&dir.path().join("host_rsa"));
        Sshd::keygen(&dir.path().join("user"));
        std::fs::copy(
            dir.path().join("user.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let child = Sshd::spawn(dir.path(), ip);
        Sshd {
            child,
            dir,
            ip: ip.to_string(),
        }
    }

    fn spawn(dir: &Path, ip: &str) -> Child {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress {ip}:2222\nHostKey {d}/host_rsa\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin yes\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nPidFile {d}/sshd.pid\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect((ip, 2222)).is_ok()
        });
        assert!(up, "sshd did not listen on {ip}:2222");
        child
    }

    /// A new host key: what a man in the middle would present.
    fn change_host_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let key = self.dir.path().join("host_rsa");
        std::fs::remove_file(&key).unwrap();
        std::fs::remove_file(key.with_extension("pub")).unwrap();
        Sshd::keygen(&key);
        self.child = Sshd::spawn(self.dir.path(), &self.ip);
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_private_repository_over_ssh_with_a_key_and_a_pinned_host_key() {
    require_root("sshd runs as root and logs in as root");
    require_tool(
        "sshd",
        "Debian's openssh-server package (scripts/test.sh installs it)",
    );
    let sshd_ip = loopback();
    let mut sshd = Sshd::start(&sshd_ip);
    let ip = loopback();
    let s = secure_agent(&ip, &[], &[], "");
    let p = s.project_as(Some("admin"));
    let repo = GitRepo::new();
    repo.commit_app("over-ssh", Some("v1"));
    let bare = sshd.dir.path().join("private.git");
    let ok = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(repo.path())
        .arg(&bare)
        .status()
        .unwrap();
    assert!(ok.success());
    let url = format!("ssh://root@{sshd_ip}:2222{}", bare.display());
    let run = |r: &str| {
        p.deployctl(&[
            "run",
            "ssh-app",
            "--repo",
            &url,
            "--ref",
            r,
            "--command",
            "python3 app.py",
        ])
    };
    run("v1").expect_code(1).mentions("credential");

    let key = sshd.dir.path().join("user");
    p.deployctl(&[
        "secret",
        "set",
        "DEPLOY_KEY",
        "--kind",
        "git-ssh-key",
        "--owner",
        "user:admin",
        "--from-file",
        &key.to_string_lossy(),
    ])
    .ok();
    run("v1").ok();
    let served = wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(10));
    assert_eq!(served["marker"], "over-ssh");
    let known = std::fs::read_to_string(s.agent.data_dir.join("known_hosts")).unwrap();
    assert!(
        known.starts_with(&format!("{sshd_ip} sha256:")),
        "first use records the host key: {known}"
    );

    // The server's host key changes: refused, clearly, and the app keeps running.
    sshd.change_host_key();
    let out = run("v1");
    out.expect_code(1).mentions("host key").mentions("changed");
    assert_eq!(
        wait_for_json(&s.agent.app_url(8000, "/"), Duration::from_secs(5))["marker"],
        "over-ssh"
    );
}
