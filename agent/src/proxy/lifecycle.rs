//! The node proxy's life as the agent runs it: adopted (its sockets taken over) or started
//! (with every socket the agent holds, then every route), its exit watched through a pidfd,
//! and the routes and removals sent to it, each with the next generation.

use std::collections::hash_map::Entry;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use super::control::{CONTROL_TIMEOUT, PING_TIMEOUT};
use super::error::ProxyError;
use super::node::{Inner, NodeProxy};
use super::table::RouteSpec;
use crate::procstat::ProcId;

/// How long a new proxy may take to answer on its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The backlog of a listening socket the agent makes.
const BACKLOG: u32 = 1024;

impl NodeProxy {
    /// The running proxy, started (or adopted) first if needed.
    pub(super) async fn ensure(&self, inner: &mut Inner) -> Result<ProcId, ProxyError> {
        match inner.running {
            Some(id) if id.is_running() => Ok(id),
            _ => {
                self.let_go(inner);
                self.adopt_or_start(inner).await
            }
        }
    }

    /// Adopts the proxy an earlier agent run left (its sockets taken over), else starts one.
    /// One that does not answer is killed first; one too old to hand its sockets over is
    /// stopped (its connections drop, once).
    pub(super) async fn adopt_or_start(&self, inner: &mut Inner) -> Result<ProcId, ProxyError> {
        if let Some(id) = self.recorded().await.filter(|id| id.is_running()) {
            match self.client.table(CONTROL_TIMEOUT).await {
                Ok(reply) if reply.pid == id.pid => {
                    inner.generations.above(reply.newest);
                    self.took(inner, id);
                    self.take_listeners(inner, &reply.table).await;
                    tracing::info!(pid = id.pid, "adopted the node proxy");
                    return Ok(id);
                }
                Ok(reply) => tracing::warn!(pid = id.pid, answering = reply.pid, "another process answers on the node proxy's control socket; starting the node proxy again"),
                Err(e) if e.is_unknown_request() => {
                    tracing::info!(pid = id.pid, "the node proxy is of an older version that cannot hand its listening sockets over: starting the new one (its connections drop, this once)");
                    super::stop::stop(&self.dir, id).await;
                }
                Err(e) => {
                    tracing::warn!(pid = id.pid, error = %e, "the node proxy an earlier run of the agent left does not answer: replacing it");
                    super::stop::kill_and_wait(id).await;
                }
            }
        }
        self.start(inner).await
    }

    /// Starts a proxy with every listening socket the agent holds, waits for it to answer,
    /// takes the sockets it opened itself (from its routes file), and sends it every route.
    pub(super) async fn start(&self, inner: &mut Inner) -> Result<ProcId, ProxyError> {
        let mut sockets = Vec::new();
        for (listen, l) in &inner.listeners {
            match l.as_fd().try_clone_to_owned() {
                Ok(fd) => sockets.push(fd),
                Err(e) => {
                    tracing::error!(%listen, error = %e, "cannot hand the listening socket to the node proxy")
                }
            }
        }
        let (dir, threads) = (self.dir.clone(), self.threads);
        let id =
            tokio::task::spawn_blocking(move || super::spawn::detached(&dir, sockets, threads))
                .await
                .map_err(|e| ProxyError::NotStarted(format!("starting the node proxy: {e}")))?
                .map_err(ProxyError::NotStarted)?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let reply = loop {
            match self.client.table(PING_TIMEOUT).await {
                Ok(reply) if reply.pid == id.pid => break reply,
                other if tokio::time::Instant::now() >= deadline || !id.is_running() => {
                    let why = other
                        .err()
                        .map_or_else(|| "another process answers".into(), |e| e.to_string());
                    return Err(ProxyError::NotStarted(format!(
                        "the node proxy (pid {}) did not come up ({why}); see {}",
                        id.pid,
                        self.dir.join("proxy.log").display()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        inner.generations.above(reply.newest);
        self.took(inner, id);
        self.take_listeners(inner, &reply.table).await;
        let listens: Vec<SocketAddr> = inner.decided.keys().copied().collect();
        for listen in listens {
            if let Err(e) = self.send_decided(inner, listen).await {
                tracing::error!(%listen, error = %e, "cannot send the route to the node proxy");
            }
        }
        tracing::info!(pid = id.pid, "node proxy started");
        Ok(id)
    }

    /// `id` is the proxy from now on; its exit is reported at once (a pidfd).
    pub(super) fn took(&self, inner: &mut Inner, id: ProcId) {
        inner.running = Some(id);
        *self.seen_lock() = Some(id);
        let exits = self.exits.clone();
        match super::pidfd::open(id) {
            Ok(fd) => {
                tokio::spawn(async move {
                    match super::pidfd::exited(fd).await {
                        Ok(()) => drop(exits.send(id)),
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot wait on the node proxy's pidfd; its exit is noticed by the pings")
                        }
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => drop(exits.send(id)),
            Err(e) => {
                tracing::debug!(error = %e, "no pidfd for the node proxy; its exit is noticed by the pings")
            }
        }
    }

    /// No proxy runs from now on (as far as the agent is concerned).
    pub(super) fn let_go(&self, inner: &mut Inner) {
        inner.running = None;
        *self.seen_lock() = None;
    }

    /// Takes a duplicate of every listening socket in `table` the agent does not hold.
    pub(super) async fn take_listeners(&self, inner: &mut Inner, table: &[RouteSpec]) {
        for r in table {
            if inner.listeners.contains_key(&r.listen) {
                continue;
            }
            match self.client.listener(r.listen).await {
                Ok(l) => {
                    inner.listeners.insert(r.listen, l);
                }
                Err(e) => {
                    tracing::warn!(listen = %r.listen, error = %e, "cannot take a duplicate of the node proxy's listening socket (a proxy restart refuses its connections meanwhile)")
                }
            }
        }
    }

    /// Sends the decided route for `listen` (numbered anew); it is sure once sent.
    pub(super) async fn send_decided(
        &self,
        inner: &mut Inner,
        listen: SocketAddr,
    ) -> Result<(), ProxyError> {
        let Some(mut route) = inner.decided.get(&listen).cloned() else {
            return Ok(());
        };
        self.send_set(inner, &mut route).await?;
        inner.decided.insert(listen, route);
        inner.unsure.remove(&listen);
        Ok(())
    }

    /// Sends `route` with the next generation and the listening socket for its address
    /// (made now if the agent holds none: bound, or the proxy's if it has one).
    pub(super) async fn send_set(
        &self,
        inner: &mut Inner,
        route: &mut RouteSpec,
    ) -> Result<(), ProxyError> {
        if let Entry::Vacant(held) = inner.listeners.entry(route.listen) {
            let l = match bind(route.listen) {
                Ok(l) => l,
                Err(bind_error) => self
                    .client
                    .listener(route.listen)
                    .await
                    .map_err(|_| ProxyError::refused(bind_error))?,
            };
            held.insert(l);
        }
        route.generation = inner.generations.next().await;
        let fd = inner.listeners.get(&route.listen).map(|l| l.as_raw_fd());
        self.client.set_route(route.clone(), fd).await
    }

    pub(super) async fn send_remove(
        &self,
        inner: &mut Inner,
        listen: SocketAddr,
    ) -> Result<(), ProxyError> {
        let generation = inner.generations.next().await;
        self.client.remove_route(listen, generation).await
    }

    /// The proxy the pid file names, if any.
    pub(super) async fn recorded(&self) -> Option<ProcId> {
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
}

/// A listening socket on `listen`, as the proxy would make it.
fn bind(listen: SocketAddr) -> Result<std::net::TcpListener, String> {
    let fail = |e: std::io::Error| format!("cannot listen on {listen}: {e}");
    let socket = match listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(listen).map_err(fail)?;
    socket
        .listen(BACKLOG)
        .and_then(|l| l.into_std())
        .map_err(fail)
}
