//! The node proxy (`deploy-agent proxy`) the local agent leaves running when it stops: it
//! keeps serving the deployments' ports, so `local stop` says which and how to stop it,
//! and stops it when no deployment is left. Found by the agent's files:
//! `DATA/proxy/proxy.pid` ("PID START_TIME") and `DATA/proxy/routes.json`.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long the proxy may take to exit after SIGTERM (then SIGKILL).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The running node proxy of a data directory and what it serves.
pub(super) struct NodeProxy {
    pub pid: u32,
    start_time: u64,
    /// Each route: the deployment's name (empty when an older agent did not write it) and
    /// the address it listens on.
    pub routes: Vec<(String, String)>,
}

#[derive(serde::Deserialize)]
struct Route {
    listen: String,
    #[serde(default)]
    name: String,
}

/// The node proxy that runs from `data_dir`, if one does (its pid file names a process
/// with that start time).
pub(super) fn find(data_dir: &Path) -> Option<NodeProxy> {
    let dir = data_dir.join("proxy");
    let text = std::fs::read_to_string(dir.join("proxy.pid")).ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (pid, start_time) = (u32::try_from(parts.next()??).ok()?, parts.next()??);
    if start_time_of(pid) != Some(start_time) {
        return None;
    }
    let routes: Vec<Route> = std::fs::read(dir.join("routes.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Some(NodeProxy {
        pid,
        start_time,
        routes: routes.into_iter().map(|r| (r.name, r.listen)).collect(),
    })
}

impl NodeProxy {
    /// "web on 127.0.0.1:8000, api on 127.0.0.1:8001".
    pub(super) fn serving(&self) -> String {
        self.routes
            .iter()
            .map(|(name, listen)| match name.as_str() {
                "" => listen.clone(),
                n => format!("{n} on {listen}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How a person stops it: the last of its deployments removed (or stopped).
    pub(super) fn how_to_stop(&self) -> String {
        let names: Vec<&str> = self
            .routes
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        match names.as_slice() {
            [one] => format!("`deployctl remove {one}` (or `deployctl stop {one}`) stops it"),
            [] => format!(
                "`deployctl remove NAME` of its deployments stops it, or `kill {}`",
                self.pid
            ),
            _ => "`deployctl remove NAME` (or `deployctl stop NAME`) of each stops it with the last one"
                .to_string(),
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_WAIT`]; whether it is gone.
    pub(super) async fn stop(&self) -> bool {
        let pid = Pid::from_raw(self.pid as i32);
        if kill(pid, Signal::SIGTERM).is_err() {
            return !self.runs();
        }
        let began = Instant::now();
        while self.runs() {
            if began.elapsed() > STOP_WAIT * 2 {
                return false;
            }
            if began.elapsed() > STOP_WAIT {
                let _ = kill(pid, Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    fn runs(&self) -> bool {
        start_time_of(self.pid) == Some(self.start_time) && !super::zombie(self.pid)
    }
}

/// A process's start time (`/proc/PID/stat` field 22), if it exists.
fn start_time_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}
