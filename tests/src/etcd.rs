//! A real etcd on a loopback address of the test's own, for the etcd state backend.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http_get, wait_until};

/// A real etcd on its own loopback address, killed when dropped.
pub struct Etcd {
    child: Child,
    /// `IP:2379`: what goes after `etcd://` in `core.state.uri`.
    pub client: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd with its client URL on `ip:2379` and waits (20 s at most) until its
    /// health endpoint says it is healthy.
    pub fn start(ip: &str) -> Etcd {
        let bin = which("etcd").unwrap_or_else(|| {
            panic!("etcd is not installed: scripts/test.sh installs Debian's etcd-server")
        });
        let dir = tempfile::tempdir().expect("a directory for etcd's data");
        let client = format!("http://{ip}:2379");
        let peer = format!("http://{ip}:2380");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd's log file");
        let child = Command::new(bin)
            .args(["--name", "e2e", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("e2e={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd's log file"))
            .stderr(log)
            .spawn()
            .expect("starting etcd");
        let etcd = Etcd {
            child,
            client: format!("{ip}:2379"),
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(20), || {
            http_get(&format!("http://{ip}:2379/health"))
                .is_some_and(|(code, body)| code == 200 && body.contains("true"))
        });
        assert!(up, "etcd did not become healthy on {ip}:2379");
        etcd
    }

    /// `etcd://IP:2379/PREFIX`.
    pub fn uri(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.client)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}
