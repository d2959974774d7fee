//! Private repositories: over real HTTP with basic auth (the owner's git credential) and
//! over ssh with a key and a pinned host key.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deployctl_e2e::*;

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
