//! A node of the README's examples (`10.0.0.5`): an agent on a loopback address of the
//! test's own, started the way the systemd unit starts it, `deploy-agent --config FILE`,
//! with a config file of the node's own standing for `/etc/deploy-agent/config.toml`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{agent_bin, tail, wait_until};

/// An agent on `IP:7070` (gRPC) and `IP:7071` (HTTP), its apps on `IP`.
pub struct NodeAgent {
    pub ip: String,
    /// Its config file (what the unit passes with `--config`).
    pub config: PathBuf,
    pub data_dir: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
}

impl NodeAgent {
    /// Writes the node's config under `dir` (nothing runs yet: `deploy-agent init` comes
    /// first, as on a fresh node).
    pub fn prepare(dir: &Path, ip: &str) -> NodeAgent {
        let etc = dir.join("etc");
        let data_dir = dir.join("data");
        fs::create_dir_all(&etc).expect("creating the node's config directory");
        let config = etc.join("config.toml");
        fs::write(
            &config,
            format!(
                "listen = \"{ip}:7070\"\nhttp_listen = \"{ip}:7071\"\ndata_dir = \"{}\"\napp_host = \"{ip}\"\n",
                data_dir.display()
            ),
        )
        .expect("writing the node's config");
        NodeAgent {
            ip: ip.to_string(),
            config,
            data_dir,
            stderr: dir.join("agent.stderr"),
            child: None,
        }
    }

    /// Starts `deploy-agent --config FILE` and waits (20 s at most) for its ready line.
    pub fn start(&mut self) {
        assert!(
            self.child.is_none(),
            "the agent on {} runs already",
            self.ip
        );
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .expect("opening the agent's stderr file");
        let mut child = Command::new(agent_bin())
            .arg("--config")
            .arg(&self.config)
            .env("DEPLOY_AGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agent_bin().display()));
        let ready = crate::agent::ready_line(&mut child, Duration::from_secs(20)).is_some();
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the agent on {} did not start:\n{}",
                self.ip,
                tail(&self.log(), 60)
            );
        }
        self.child = Some(child);
    }

    /// SIGTERM (what `systemctl stop` sends; the apps keep running) and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let done = wait_until(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !done {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// `systemctl restart deploy-agent`.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// What the agent logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
