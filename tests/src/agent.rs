//! A real `deploy-agent` process on its own loopback address and data directory.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use crate::agent_bin;

/// A running `deploy-agent` on its own loopback address and data directory.
///
/// Dropping it kills the agent and every app it started (the agent leaves apps running when
/// it stops, by design). It can be killed, stopped and started again on the same addresses
/// and data directory, the way systemd restarts it on a node.
pub struct Agent {
    /// The loopback address the agent listens on and apps bind (`--app-host`).
    pub ip: String,
    /// gRPC address (what `deployctl` talks to).
    pub grpc: SocketAddr,
    /// HTTP health address.
    pub http: SocketAddr,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The agent's stderr (its logs, appended across restarts), shown when a test fails.
    pub stderr_path: PathBuf,
    /// Extra arguments (e.g. `--config FILE`), given again on a restart.
    extra: Vec<String>,
    /// `None` while the agent is stopped.
    child: Option<Child>,
    /// The uid and gid it runs as (`None`: the test's own, root in CI).
    user: Option<(u32, u32)>,
    // Last, so the directory is removed after the processes are killed.
    _tmp: TempDir,
}

/// How long the agent may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

impl Agent {
    /// Starts `deploy-agent --listen IP:0 --http-listen IP:0 --app-host IP` and waits (20 s at
    /// most) for its ready line.
    pub fn start(ip: &str) -> Agent {
        Agent::start_with(ip, "", &[])
    }

    /// Like [`Agent::start`], with a config file (TOML text; empty: none) and extra flags.
    pub fn start_with(ip: &str, config_toml: &str, extra: &[&str]) -> Agent {
        Agent::start_prepared(ip, config_toml, extra, |_| {})
    }

    /// Like [`Agent::start_with`], after `prepare` ran on the (new, empty) data directory,
    /// e.g. `deploy-agent init` and `deploy-agent user add` (see [`agent_admin`]).
    pub fn start_prepared(
        ip: &str,
        config_toml: &str,
        extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Agent {
        Agent::start_full(ip, config_toml, extra, prepare, None)
    }

    /// An agent run as `uid:gid` (not root: its apps run as it, with no walls), its data
    /// directory given to it.
    pub fn start_as_user(ip: &str, uid: u32, gid: u32) -> Agent {
        Agent::start_full(
            ip,
            "",
            &[],
            |data| {
                std::os::unix::fs::chown(data, Some(uid), Some(gid))
                    .expect("giving the data directory to the agent's user");
            },
            Some((uid, gid)),
        )
    }

    fn start_full(
        ip: &str,
        config_toml: &str,
        extra: &[&str],
        prepare: impl FnOnce(&Path),
        user: Option<(u32, u32)>,
    ) -> Agent {
        let tmp = tempfile::Builder::new()
            .prefix("deployctl-e2e-agent-")
            .tempdir()
            .expect("creating a temporary directory for the agent");
        // Apps run as their deployments' own users (the agent is root): they pass through.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711))
                .expect("opening the agent's temporary directory to its apps' users");
        }
        let data_dir = tmp.path().join("data");
        fs::create_dir_all(&data_dir).expect("creating the agent's data directory");
        prepare(&data_dir);
        let stderr_path = tmp.path().join("agent.stderr");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !config_toml.is_empty() {
            let path = tmp.path().join("config.toml");
            fs::write(&path, config_toml).expect("writing the agent's config file");
            extra.push("--config".into());
            extra.push(path.to_string_lossy().into_owned());
        }
        let (child, grpc, http) = spawn(
            ip,
            &format!("{ip}:0"),
            &format!("{ip}:0"),
            &data_dir,
            &stderr_path,
            &extra,
            user,
        );
        Agent {
            ip: ip.to_string(),
            grpc,
            http,
            data_dir,
            stderr_path,
            extra,
            child: Some(child),
            user,
            _tmp: tmp,
        }
    }

    /// The agent's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9` the agent (its apps keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and waits (15 s at most) for the agent to exit; returns whether it exited
    /// with success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let mut status = None;
        crate::wait_until(Duration::from_secs(15), || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        status.is_some_and(|s| s.success())
    }

    /// Starts the agent again (after [`Agent::kill9`] or [`Agent::terminate`]) on the same
    /// addresses and ports, with the same data directory and flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart: the agent still runs");
        let (child, grpc, http) = spawn(
            &self.ip,
            &self.grpc.to_string(),
            &self.http.to_string(),
            &self.data_dir,
            &self.stderr_path,
            &self.extra,
            self.user,
        );
        assert_eq!((grpc, http), (self.grpc, self.http));
        self.child = Some(child);
    }

    /// The address for `deployctl declare env agent NAME --address ...`.
    pub fn address(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// `http://IP:HTTPPORT/PATH` on the agent's HTTP endpoint.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// `http://IP:PORT/PATH` of an app on this agent's address.
    pub fn app_url(&self, port: u16, path: &str) -> String {
        format!("http://{}:{}{}", self.ip, port, path)
    }

    /// What the agent logged so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `<data>/deployments/<name>`.
    pub fn deployment_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("deployments").join(name)
    }

    /// The node record `deployment.json` of a deployment, if there is one.
    pub fn record(&self, name: &str) -> Option<Value> {
        let text = fs::read_to_string(self.deployment_dir(name).join("deployment.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The app's output so far.
    pub fn app_log(&self, name: &str) -> String {
        fs::read_to_string(self.deployment_dir(name).join("logs").join("app.log"))
            .unwrap_or_default()
    }

    /// Every app pid named in the records (process-group leaders).
    pub fn app_pids(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir(self.data_dir.join("deployments")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let text = fs::read_to_string(e.path().join("deployment.json")).ok()?;
                let v: Value = serde_json::from_str(&text).ok()?;
                v.get("pid")?.as_u64().map(|p| p as u32)
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        self.kill_apps();
        self.remove_cgroups();
        crate::users::free_app_users(&self.data_dir);
        if std::thread::panicking() {
            eprintln!(
                "--- deploy-agent {} stderr (last 150 lines of {}) ---\n{}",
                self.ip,
                self.stderr_path.display(),
                tail(&self.stderr(), 150)
            );
        }
    }
}

/// `text` without terminal colour sequences (`ESC [ ... m`), as the agent's log has them.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The agent's ready line (`deploy-agent ready: grpc=... http=...`) within `within`, or
/// `None`. Its stdout is read on a thread that keeps draining it (so the agent never gets
/// EPIPE).
pub(crate) fn ready_line(child: &mut Child, within: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // Nobody may listen any more; keep reading.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("deploy-agent ready:") => return Some(line),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Starts `deploy-agent` and waits for its ready line: the child and its two addresses.
fn spawn(
    ip: &str,
    listen: &str,
    http_listen: &str,
    data_dir: &Path,
    stderr_path: &Path,
    extra: &[String],
    user: Option<(u32, u32)>,
) -> (Child, SocketAddr, SocketAddr) {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_path)
        .expect("opening the agent's stderr file");
    let mut cmd = Command::new(agent_bin());
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid).env("HOME", data_dir);
    }
    let mut child = cmd
        .arg("--listen")
        .arg(listen)
        .arg("--http-listen")
        .arg(http_listen)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--app-host")
        .arg(ip)
        .args(extra)
        .env(
            "DEPLOY_AGENT_LOG",
            std::env::var("DEPLOY_AGENT_LOG")
                .unwrap_or_else(|_| "debug,h2=info,hyper=info,tower=info,tonic=info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", agent_bin().display()));

    let Some(line) = ready_line(&mut child, READY_TIMEOUT) else {
        let _ = child.kill();
        let status = child.wait().ok();
        panic!(
            "deploy-agent on {ip} did not print its ready line within {READY_TIMEOUT:?} (exit: {status:?})\n--- agent stderr ---\n{}",
            tail(&fs::read_to_string(stderr_path).unwrap_or_default(), 100)
        );
    };
    let field = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key}ADDR in the agent's ready line: {line:?}"))
    };
    (child, field("grpc="), field("http="))
}
