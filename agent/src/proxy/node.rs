//! The agent's side of the node proxy process: what the agent decided for each public
//! address (the routes, each numbered by a generation), a duplicate of every listening
//! socket, and the proxy itself — started in a session of its own (it outlives the agent: an
//! agent crash, upgrade or restart drops no connection), adopted after an agent restart (its
//! pid and start time are in `proxy.pid`), replaced when it dies or stops answering
//! ([`super::watch`]) with every socket and route handed to the new one, and stopped when it
//! serves no deployment any more.
//!
//! ```text
//! <data>/proxy/control.sock   the control socket (the agent's only)
//! <data>/proxy/wake.sock      the agent's: the proxy asks it to wake a sleeping deployment
//! <data>/proxy/routes.json    the routes, written by the proxy at every change
//! <data>/proxy/proxy.pid      "PID START_TIME" of the running proxy
//! <data>/proxy/generation     the last route generation the agent handed out
//! <data>/proxy/proxy.log      its log
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex as StdMutex, MutexGuard};

use tokio::sync::{mpsc, Mutex};

use super::control::ProxyClient;
use super::error::ProxyError;
use super::generation::Generations;
use super::settings::ConnSettings;
use super::table::RouteSpec;
use crate::procstat::ProcId;

pub(crate) struct NodeProxy {
    pub(super) dir: PathBuf,
    /// The agent's `proxy_threads`, given to each proxy it starts.
    pub(super) threads: Option<usize>,
    /// The agent's settings for the routes' connections (`proxy_*`, `trusted_proxies`),
    /// sent with every route.
    connections: ConnSettings,
    pub(super) client: ProxyClient,
    /// Everything the agent decided; held while it talks to the proxy or (re)starts it.
    pub(super) inner: Mutex<Inner>,
    /// The running proxy as readers see it without waiting for a change in progress.
    seen: StdMutex<Option<ProcId>>,
    /// Why the deployments behind the proxy cannot be served now, when they cannot.
    trouble: StdMutex<Option<String>>,
    /// Proxies that exited, as their pidfds tell.
    pub(super) exits: mpsc::UnboundedSender<ProcId>,
    pub(super) exited: Mutex<mpsc::UnboundedReceiver<ProcId>>,
}

pub(super) struct Inner {
    pub running: Option<ProcId>,
    /// The route the agent decided for each public address: what the proxy must serve.
    pub decided: BTreeMap<SocketAddr, RouteSpec>,
    /// Addresses whose last change the proxy did not confirm: it may still take it, so the
    /// decision is sent again, newer ([`super::reconcile`]).
    pub unsure: BTreeSet<SocketAddr>,
    /// A duplicate of every listening socket the proxy serves (or is to serve).
    pub listeners: HashMap<SocketAddr, std::net::TcpListener>,
    pub generations: Generations,
    /// The last failure to repair each address (said once, not every few seconds).
    pub failing: HashMap<SocketAddr, String>,
}

impl NodeProxy {
    pub(crate) fn new(data_dir: &Path, config: &crate::config::Config) -> NodeProxy {
        let dir = data_dir.join("proxy");
        let (exits, exited) = mpsc::unbounded_channel();
        NodeProxy {
            client: ProxyClient::new(&dir.join("control.sock")),
            inner: Mutex::new(Inner {
                running: None,
                decided: BTreeMap::new(),
                unsure: BTreeSet::new(),
                listeners: HashMap::new(),
                generations: Generations::load(&dir.join("generation")),
                failing: HashMap::new(),
            }),
            dir,
            threads: config.proxy_threads,
            connections: ConnSettings::from_config(config),
            seen: StdMutex::new(None),
            trouble: StdMutex::new(None),
            exits,
            exited: Mutex::new(exited),
        }
    }

    pub(super) fn seen_lock(&self) -> MutexGuard<'_, Option<ProcId>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The proxy that runs, as last started or adopted.
    pub(super) fn seen(&self) -> Option<ProcId> {
        *self.seen_lock()
    }

    /// The proxy's pid if it runs (for telling its sockets from a foreign process's).
    pub(crate) async fn pid(&self) -> Option<u32> {
        self.seen().filter(|id| id.is_running()).map(|id| id.pid)
    }

    /// Why deployments behind the proxy cannot be served now ("node proxy not answering:
    /// ..."), or `None` while it serves.
    pub(crate) fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn set_trouble(&self, why: Option<String>) {
        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// The agent decides that `route` serves its address: recorded first (the watch sends
    /// it again until the proxy has it), then sent, starting the proxy if it does not run.
    pub(crate) async fn set_route(&self, mut route: RouteSpec) -> Result<(), ProxyError> {
        route.connections.clone_from(&self.connections);
        let mut inner = self.inner.lock().await;
        let listen = route.listen;
        inner.decided.insert(listen, route);
        inner.unsure.insert(listen);
        self.ensure(&mut inner).await?;
        // A proxy started just now was sent every decided route already.
        if inner.unsure.contains(&listen) {
            self.send_decided(&mut inner, listen).await?;
        }
        Ok(())
    }

    /// `route` serves its address instead of what was decided, but only while every backend
    /// decided there is one of `within` (the instances `route` is chosen among): an
    /// instance's health that changes never undoes a switch to other instances, nor a
    /// removal. Whether it was set.
    pub(crate) async fn set_route_within(
        &self,
        mut route: RouteSpec,
        within: &[SocketAddr],
    ) -> Result<bool, ProxyError> {
        route.connections.clone_from(&self.connections);
        let mut inner = self.inner.lock().await;
        let listen = route.listen;
        if !follows(inner.decided.get(&listen), &route, within) {
            return Ok(false);
        }
        inner.decided.insert(listen, route);
        inner.unsure.insert(listen);
        self.ensure(&mut inner).await?;
        if inner.unsure.contains(&listen) {
            self.send_decided(&mut inner, listen).await?;
        }
        Ok(true)
    }

    /// A switch: `route` is the agent's decision only once the proxy has taken it. When it
    /// has not (it did not answer), the route decided before is sent again with a newer
    /// generation, so the switch, should the proxy take it late, is undone.
    pub(crate) async fn switch_route(&self, mut route: RouteSpec) -> Result<(), ProxyError> {
        route.connections.clone_from(&self.connections);
        let mut inner = self.inner.lock().await;
        let listen = route.listen;
        let mut sent = route;
        let result = match self.ensure(&mut inner).await {
            Ok(id) => self.send_set(&mut inner, &mut sent).await.map_err(|e| {
                if id.is_running() || !e.is_down() {
                    e
                } else {
                    ProxyError::NotStarted(format!(
                        "the node proxy (pid {}) did not answer and was replaced ({e})",
                        id.pid
                    ))
                }
            }),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                inner.decided.insert(listen, sent);
                inner.unsure.remove(&listen);
                Ok(())
            }
            Err(e) => {
                inner.unsure.insert(listen);
                if !inner.decided.contains_key(&listen) {
                    inner.listeners.remove(&listen);
                }
                Err(e)
            }
        }
    }

    /// Lets go of `listen` (the agent's socket too, so an app may bind it). When that was
    /// the last route, the proxy stops: a node that serves no deployment runs none (the
    /// next route starts it again). Under the lock, so no route is set meanwhile.
    pub(crate) async fn remove_route(&self, listen: SocketAddr) -> Result<(), ProxyError> {
        let mut inner = self.inner.lock().await;
        inner.decided.remove(&listen);
        inner.listeners.remove(&listen);
        inner.unsure.insert(listen);
        let Some(id) = inner.running.filter(|id| id.is_running()) else {
            // A proxy started later has it from its file: the watch removes it then.
            return Ok(());
        };
        self.send_remove(&mut inner, listen).await?;
        inner.unsure.remove(&listen);
        if inner.decided.is_empty() && self.client.stats().await.is_ok_and(|r| r.is_empty()) {
            self.stop(&mut inner, id).await;
        }
        Ok(())
    }

    /// Stops the proxy `id` (it serves nothing), with the sockets the agent held for it.
    pub(super) async fn stop(&self, inner: &mut Inner, id: ProcId) {
        self.let_go(inner);
        super::stop::stop(&self.dir, id).await;
        inner.listeners.clear();
        inner.unsure.clear();
    }

    /// When the agent stops: what the proxy keeps serving after it (`Some(routes)`, with its
    /// pid), or `None` when it does not run. One that serves nothing is stopped now.
    pub(crate) async fn on_agent_stop(&self) -> Option<(u32, Vec<super::RouteStats>)> {
        let mut inner = self.inner.lock().await;
        let id = inner.running.filter(|id| id.is_running())?;
        let routes = self.client.stats().await.ok()?;
        if routes.is_empty() {
            self.stop(&mut inner, id).await;
            return None;
        }
        Some((id.pid, routes))
    }

    /// Where the agent hears the proxy's requests to wake a sleeping deployment.
    pub(crate) fn wake_socket(&self) -> PathBuf {
        super::wake::socket_beside(&self.dir.join("control.sock"))
    }

    /// Where the proxy's pid file is (for people: how to stop it by hand).
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("proxy.pid")
    }

    /// The routes' counts, when the proxy runs (a node that never used it has none).
    pub(crate) async fn stats_if_running(&self) -> Option<Vec<super::RouteStats>> {
        self.seen().filter(|id| id.is_running())?;
        self.client.stats().await.ok()
    }

    /// Requests (or connections) the proxy has in flight on the route on `listen`: on
    /// `backend` only, or on all of its backends. 0 when the proxy cannot be asked.
    pub(crate) async fn in_flight(&self, listen: SocketAddr, backend: Option<SocketAddr>) -> u64 {
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
        let mut inner = self.inner.lock().await;
        if has_routes {
            if let Err(e) = self.ensure(&mut inner).await {
                tracing::error!(error = %e, "cannot start the node proxy");
            }
        } else if let Some(id) = self.recorded().await.filter(|id| id.is_running()) {
            if self.client.stats().await.is_ok_and(|r| r.is_empty()) {
                super::stop::stop(&self.dir, id).await;
            }
        }
    }
}

/// Whether `route` may replace `decided` for an instance's health: only a route decided over
/// the same instances (`within`; none left counts), and only when it changes something. A
/// sleeping deployment's route stays until it wakes.
fn follows(decided: Option<&RouteSpec>, route: &RouteSpec, within: &[SocketAddr]) -> bool {
    decided.is_some_and(|d| {
        d.sleeping.is_none()
            && d.backends.iter().all(|b| within.contains(&b.addr))
            && !d.routes_like(route)
    })
}

#[cfg(test)]
mod tests {
    use super::super::table::BackendSpec;
    use super::*;

    fn route(ports: &[u16]) -> RouteSpec {
        RouteSpec {
            listen: "127.0.0.1:8000".parse().unwrap(),
            mode: crate::spec::ProxyMode::Http,
            backends: ports
                .iter()
                .map(|p| BackendSpec {
                    addr: SocketAddr::from(([127, 0, 0, 1], *p)),
                    release: 1,
                    owner: None,
                })
                .collect(),
            hold_timeout_ms: 10_000,
            name: "app".into(),
            generation: 0,
            connections: Default::default(),
            sleeping: None,
        }
    }

    #[test]
    fn a_health_change_never_undoes_a_switch_or_a_removal() {
        let both = route(&[41000, 41001]);
        let within: Vec<SocketAddr> = both.backends.iter().map(|b| b.addr).collect();
        // One instance out, then back in (from none left too).
        assert!(follows(Some(&both), &route(&[41001]), &within));
        assert!(follows(Some(&route(&[])), &route(&[41000]), &within));
        // Nothing to change.
        assert!(!follows(Some(&both), &route(&[41000, 41001]), &within));
        // A switch to other instances (a deploy, a restart on new ports) wins.
        assert!(!follows(Some(&route(&[42000])), &route(&[41001]), &within));
        // A removed route stays removed.
        assert!(!follows(None, &route(&[41001]), &within));
        // A sleeping deployment's route stays until it wakes.
        let asleep = RouteSpec {
            sleeping: Some(super::super::table::Sleeping {
                wake_timeout_ms: 60_000,
            }),
            ..route(&[])
        };
        assert!(!follows(Some(&asleep), &route(&[41000]), &within));
    }
}
