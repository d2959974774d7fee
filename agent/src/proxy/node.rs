//! The agent's side of the node proxy process: start it once in a session of its own (it
//! outlives the agent: an agent crash, upgrade or restart drops no connection), adopt it
//! after an agent restart (its pid and start time are in `proxy.pid`), start it again if
//! it ever dies (its routes are persisted, so it serves at once), talk to it, and stop it
//! when it serves no deployment any more.
//!
//! ```text
//! <data>/proxy/control.sock   the control socket (the agent's only)
//! <data>/proxy/routes.json    the routes, written by the proxy at every change
//! <data>/proxy/proxy.pid      "PID START_TIME" of the running proxy
//! <data>/proxy/proxy.log      its log
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::sync::Mutex;

use super::control::ProxyClient;
use crate::procstat::ProcId;

/// How long a new proxy may take to answer on its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct NodeProxy {
    dir: PathBuf,
    client: ProxyClient,
    /// The running proxy, once started or adopted; held while (re)starting it.
    running: Mutex<Option<ProcId>>,
}

impl NodeProxy {
    pub(crate) fn new(data_dir: &Path) -> NodeProxy {
        let dir = data_dir.join("proxy");
        NodeProxy {
            client: ProxyClient::new(&dir.join("control.sock")),
            dir,
            running: Mutex::new(None),
        }
    }

    /// The proxy's pid if it runs (for telling its sockets from a foreign process's).
    pub(crate) async fn pid(&self) -> Option<u32> {
        self.running
            .lock()
            .await
            .filter(|id| id.is_running())
            .map(|id| id.pid)
    }

    /// The running proxy (under its lock), starting (or adopting) it first if needed.
    async fn ensure(&self, running: &mut Option<ProcId>) -> Result<ProcId, String> {
        match *running {
            Some(id) if id.is_running() => Ok(id),
            _ => {
                let id = self.adopt_or_start().await?;
                *running = Some(id);
                Ok(id)
            }
        }
    }

    /// Routes `route.listen` as `route` says, starting the proxy first if it does not run.
    pub(crate) async fn set_route(&self, route: super::RouteSpec) -> Result<(), String> {
        let mut running = self.running.lock().await;
        self.ensure(&mut running).await?;
        self.client.set_route(route).await
    }

    /// Lets go of `listen`. When that was the last route, the proxy stops: a node that
    /// serves no deployment runs none (the next route starts it again). Under the lock, so
    /// no route is set meanwhile.
    pub(crate) async fn remove_route(&self, listen: std::net::SocketAddr) -> Result<(), String> {
        let mut running = self.running.lock().await;
        let id = self.ensure(&mut running).await?;
        self.client.remove_route(listen).await?;
        if self.client.stats().await.is_ok_and(|r| r.is_empty()) {
            super::stop::stop(&self.dir, id).await;
            *running = None;
        }
        Ok(())
    }

    /// When the agent stops: what the proxy keeps serving after it (`Some(routes)`, with its
    /// pid), or `None` when it does not run. One that serves nothing is stopped now.
    pub(crate) async fn on_agent_stop(&self) -> Option<(u32, Vec<super::RouteStats>)> {
        let mut running = self.running.lock().await;
        let id = running.filter(|id| id.is_running())?;
        let routes = self.client.stats().await.ok()?;
        if routes.is_empty() {
            super::stop::stop(&self.dir, id).await;
            *running = None;
            return None;
        }
        Some((id.pid, routes))
    }

    /// Where the proxy's pid file is (for people: how to stop it by hand).
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("proxy.pid")
    }

    /// The routes' counts, when the proxy runs (a node that never used it has none).
    pub(crate) async fn stats_if_running(&self) -> Option<Vec<super::RouteStats>> {
        let running = *self.running.lock().await;
        running.filter(|id| id.is_running())?;
        self.client.stats().await.ok()
    }

    /// Requests (or connections) the proxy has in flight on the route on `listen`: on
    /// `backend` only, or on all of its backends. 0 when the proxy cannot be asked.
    pub(crate) async fn in_flight(
        &self,
        listen: std::net::SocketAddr,
        backend: Option<std::net::SocketAddr>,
    ) -> u64 {
        let Some(routes) = self.stats_if_running().await else {
            return 0;
        };
        routes
            .iter()
            .filter(|r| r.listen == listen)
            .flat_map(|r| r.serving.iter().chain(&r.draining))
            .filter(|b| backend.is_none() || b.addr == backend)
            .map(|b| b.in_flight)
            .sum()
    }

    /// Adopts the proxy if one runs (after an agent restart), else starts it, but only
    /// when it has routes to serve (a node that never used it gets no process). One that
    /// an earlier agent left serving nothing is stopped.
    pub(crate) async fn resume(&self) {
        let has_routes = tokio::fs::metadata(self.dir.join("routes.json"))
            .await
            .is_ok_and(|m| m.len() > 2);
        let mut running = self.running.lock().await;
        if has_routes {
            if let Err(e) = self.ensure(&mut running).await {
                tracing::error!(error = %e, "cannot start the node proxy");
            }
        } else if let Some(id) = self.recorded().await.filter(|id| id.is_running()) {
            if self.client.stats().await.is_ok_and(|r| r.is_empty()) {
                super::stop::stop(&self.dir, id).await;
            }
        }
    }

    /// Starts the proxy again if it died (its routes come back with it).
    pub(crate) async fn watch(&self) {
        let mut running = self.running.lock().await;
        if let Some(id) = running.filter(|id| !id.is_running()) {
            tracing::error!(pid = id.pid, "the node proxy is gone; starting it again");
            if let Err(e) = self.ensure(&mut running).await {
                tracing::error!(error = %e, "cannot start the node proxy");
            }
        }
    }

    async fn adopt_or_start(&self) -> Result<ProcId, String> {
        if let Some(id) = self.recorded().await.filter(|id| id.is_running()) {
            if self.client.stats().await.is_ok() {
                tracing::info!(pid = id.pid, "adopted the node proxy");
                return Ok(id);
            }
        }
        let id = self.start().await?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while self.client.stats().await.is_err() {
            if tokio::time::Instant::now() >= deadline || !id.is_running() {
                return Err(format!(
                    "the node proxy (pid {}) did not come up; see {}",
                    id.pid,
                    self.dir.join("proxy.log").display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(pid = id.pid, "node proxy started");
        Ok(id)
    }

    /// The proxy the pid file names, if any.
    async fn recorded(&self) -> Option<ProcId> {
        let text = tokio::fs::read_to_string(self.dir.join("proxy.pid"))
            .await
            .ok()?;
        let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
        let (pid, start_time) = (parts.next()??, parts.next()??);
        Some(ProcId {
            pid: u32::try_from(pid).ok()?,
            start_time,
        })
    }

    /// `deploy-agent proxy` in a session of its own, its output to `proxy.log`.
    async fn start(&self) -> Result<ProcId, String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || spawn_detached(&dir))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// The agent's own binary: after an upgrade replaced it on disk (install.sh, a rebuild),
/// `/proc/self/exe` names the old one "PATH (deleted)"; the new one at PATH is started.
fn running_binary() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    match text.strip_suffix(" (deleted)") {
        Some(path) if Path::new(path).is_file() => Ok(std::path::PathBuf::from(path)),
        _ => Ok(exe),
    }
}

fn spawn_detached(dir: &Path) -> Result<ProcId, String> {
    let fail = |what: &str, e: std::io::Error| format!("{what}: {e}");
    crate::fsmode::create_dir(dir, crate::fsmode::PRIVATE_DIR)
        .map_err(|e| fail(&format!("creating {}", dir.display()), e))?;
    let exe = running_binary().map_err(|e| fail("finding deploy-agent", e))?;
    let log = crate::fsmode::append_private(&dir.join("proxy.log"))
        .map_err(|e| fail("opening proxy.log", e))?;
    let err = log.try_clone().map_err(|e| fail("opening proxy.log", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("proxy")
        .arg("--control")
        .arg(dir.join("control.sock"))
        .arg("--routes")
        .arg(dir.join("routes.json"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| fail("starting the node proxy", e))?;
    let pid = child.id();
    // Not waited for here: the reaper collects it if it ever exits.
    drop(child);
    let id = ProcId::of(pid).ok_or_else(|| "the node proxy exited at once".to_string())?;
    crate::fsmode::write_atomic(
        &dir.join("proxy.pid"),
        format!("{} {}\n", id.pid, id.start_time).as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    Ok(id)
}
