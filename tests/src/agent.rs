//! A real `deploy-agent` process on its own loopback address and data directory.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use crate::agent_bin;

/// A running `deploy-agent` on its own loopback address and data directory.
///
/// Dropping it kills the agent and every app it started (the agent leaves apps running when
/// it stops, by design).
pub struct Agent {
    /// The loopback address the agent listens on and apps bind (`--app-host`).
    pub ip: String,
    /// gRPC address (what `deployctl` talks to).
    pub grpc: SocketAddr,
    /// HTTP health address.
    pub http: SocketAddr,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The agent's stderr (its logs), shown when a test fails.
    pub stderr_path: PathBuf,
    child: Child,
    // Last, so the directory is removed after the processes are killed.
    _tmp: TempDir,
}

impl Agent {
    /// Starts `deploy-agent --listen IP:0 --http-listen IP:0 --app-host IP` and waits (20 s at
    /// most) for its ready line.
    pub fn start(ip: &str) -> Agent {
        let tmp = tempfile::Builder::new()
            .prefix("deployctl-e2e-agent-")
            .tempdir()
            .expect("creating a temporary directory for the agent");
        let data_dir = tmp.path().join("data");
        let stderr_path = tmp.path().join("agent.stderr");
        let stderr = fs::File::create(&stderr_path).expect("creating agent stderr file");
        let mut child = Command::new(agent_bin())
            .arg("--listen")
            .arg(format!("{ip}:0"))
            .arg("--http-listen")
            .arg(format!("{ip}:0"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--app-host")
            .arg(ip)
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

        // Read stdout on a thread so the wait has a deadline; the thread keeps draining it.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep reading so the agent never gets EPIPE.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("deploy-agent ready:") => break Some(line),
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        let Some(line) = ready else {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "deploy-agent on {ip} did not print its ready line within 20 s (exit: {status:?})\n--- agent stderr ---\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        let field = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}ADDR in the agent's ready line: {line:?}"))
        };
        let (grpc, http) = (field("grpc="), field("http="));
        Agent {
            ip: ip.to_string(),
            grpc,
            http,
            data_dir,
            stderr_path,
            child,
            _tmp: tmp,
        }
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

    /// SIGKILLs every app this agent started: the process groups named in the records, and
    /// any process whose working directory is inside the data directory (a safety net for a
    /// record written late or a group left by a failed release).
    pub fn kill_apps(&self) {
        for pid in self.app_pids() {
            if pid > 1 {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let me = std::process::id();
        let Ok(procs) = fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me || pid <= 1 {
                continue;
            }
            if let Ok(cwd) = fs::read_link(entry.path().join("cwd")) {
                if cwd.starts_with(&self.data_dir) {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_apps();
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

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
