//! The proxy process's side of the control socket: its table of routes (each with its
//! listening socket and the task that serves it), the newest generation it applied for each
//! address (removals included, so a late older request is refused as stale), and the
//! listening sockets it inherited that no route has taken yet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::control::{ControlReply, ControlRequest, RouteStats};
use super::table::{Route, RouteSpec};
use super::workers::Workers;
use super::{fdpass, routes_file};

/// A route being served: its table entry, its listening socket, and the tasks that accept
/// (one per worker).
struct Served {
    route: Arc<Route>,
    listener: std::net::TcpListener,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Default)]
struct Table {
    served: HashMap<SocketAddr, Served>,
    /// Inherited listening sockets that no route has taken yet.
    spare: HashMap<SocketAddr, std::net::TcpListener>,
    /// The newest generation set or removed, per address.
    newest: HashMap<SocketAddr, u64>,
}

pub(super) struct Proxy {
    table: Mutex<Table>,
    workers: Workers,
    file: PathBuf,
    /// Held while the routes file is written: writes in order, and a slow disk never
    /// holds up the table (the agent's pings read it).
    writing: Mutex<()>,
}

/// Why a request was not applied.
struct Refusal {
    error: String,
    stale: bool,
}

impl From<String> for Refusal {
    fn from(error: String) -> Refusal {
        Refusal {
            error,
            stale: false,
        }
    }
}

impl Proxy {
    /// A proxy with the listening sockets it inherited (not serving until routed).
    pub(super) fn new(
        file: PathBuf,
        inherited: Vec<std::net::TcpListener>,
        workers: Workers,
    ) -> Proxy {
        let mut spare = HashMap::new();
        for l in inherited {
            match l.local_addr() {
                Ok(addr) => {
                    spare.insert(addr, l);
                }
                Err(e) => tracing::warn!(error = %e, "an inherited socket without an address"),
            }
        }
        if !spare.is_empty() {
            let addrs: Vec<String> = spare.keys().map(|a| a.to_string()).collect();
            tracing::info!(
                "took over {} listening sockets from the agent: {}",
                spare.len(),
                addrs.join(", ")
            );
        }
        Proxy {
            table: Mutex::new(Table {
                spare,
                ..Default::default()
            }),
            workers,
            file,
            writing: Mutex::default(),
        }
    }

    /// Serves the routes of the routes file that can be read.
    pub(super) async fn load(&self) {
        for spec in routes_file::load(&self.file).await {
            let listen = spec.listen;
            if let Err(r) = self.set(spec, None).await {
                tracing::error!(%listen, error = %r.error, "cannot serve a persisted route");
            }
        }
    }

    /// Answers one connection's requests, a line each.
    pub(super) async fn serve_control(&self, stream: UnixStream) {
        let mut lines = fdpass::Lines::default();
        while let Ok(Some((line, mut fds))) = lines.next(&stream).await {
            let (reply, socket) = match serde_json::from_str::<ControlRequest>(&line) {
                Ok(req) => self.handle(req, fds.pop()).await,
                Err(e) => (failed(format!("not a request: {e}").into()), None),
            };
            let mut out = serde_json::to_string(&reply).unwrap_or_default();
            out.push('\n');
            let sent: Vec<_> = socket.iter().map(|s| s.as_raw_fd()).collect();
            if fdpass::send(&stream, out.as_bytes(), &sent).await.is_err() {
                return;
            }
        }
    }

    /// One request's answer, and the socket that goes with it (`listener`).
    pub(super) async fn handle(
        &self,
        req: ControlRequest,
        socket: Option<OwnedFd>,
    ) -> (ControlReply, Option<OwnedFd>) {
        let done = match req {
            ControlRequest::SetRoute { route } => self.set(route, socket).await,
            ControlRequest::RemoveRoute { listen, generation } => {
                self.remove(listen, generation).await
            }
            ControlRequest::Table => return (self.table().await, None),
            ControlRequest::Listener { listen } => {
                return match self.listener(listen).await {
                    Ok(fd) => (ok(), Some(fd)),
                    Err(e) => (failed(e.into()), None),
                }
            }
            ControlRequest::Stats => return (self.stats().await, None),
        };
        match done {
            Ok(()) => (ok(), None),
            Err(r) => (failed(r), None),
        }
    }

    /// Sets a route unless it is older than what the address has; a new address listens on
    /// `socket` (the agent's), an inherited one, or one bound now.
    async fn set(&self, spec: RouteSpec, socket: Option<OwnedFd>) -> Result<(), Refusal> {
        let mut table = self.table.lock().await;
        stale_check(&table, spec.listen, spec.generation)?;
        match table.served.get(&spec.listen) {
            Some(s) if s.route.mode == spec.mode => s.route.set(&spec),
            Some(_) => {
                // Another mode: the same socket, served the other way.
                let listener = table
                    .served
                    .remove(&spec.listen)
                    .map(|s| s.listener.try_clone())
                    .ok_or_else(|| format!("{} vanished", spec.listen))?
                    .map_err(|e| format!("the socket of {}: {e}", spec.listen))?;
                let served = self.serve(&spec, listener);
                table.served.insert(spec.listen, served);
            }
            None => {
                let listener = listening(&mut table, &spec, socket)?;
                let served = self.serve(&spec, listener);
                table.served.insert(spec.listen, served);
            }
        }
        if spec.generation > 0 {
            table.newest.insert(spec.listen, spec.generation);
        }
        tracing::info!(listen = %spec.listen, backends = ?spec.backends, generation = spec.generation, "route set");
        self.persist(table).await;
        Ok(())
    }

    async fn remove(&self, listen: SocketAddr, generation: u64) -> Result<(), Refusal> {
        let mut table = self.table.lock().await;
        stale_check(&table, listen, generation)?;
        if generation > 0 {
            table.newest.insert(listen, generation);
        }
        table.spare.remove(&listen);
        if table.served.remove(&listen).is_some() {
            tracing::info!(%listen, generation, "route removed");
        }
        self.persist(table).await;
        Ok(())
    }

    async fn table(&self) -> ControlReply {
        let table = self.table.lock().await;
        ControlReply {
            ok: true,
            pid: std::process::id(),
            table: specs(&table),
            newest: table.newest.values().copied().max().unwrap_or(0),
            ..Default::default()
        }
    }

    /// A duplicate of the listening socket on `listen`.
    async fn listener(&self, listen: SocketAddr) -> Result<OwnedFd, String> {
        let table = self.table.lock().await;
        let fd = match (table.served.get(&listen), table.spare.get(&listen)) {
            (Some(s), _) => s.listener.as_fd().try_clone_to_owned(),
            (None, Some(l)) => l.as_fd().try_clone_to_owned(),
            (None, None) => return Err(format!("the node proxy does not listen on {listen}")),
        };
        fd.map_err(|e| format!("duplicating the socket of {listen}: {e}"))
    }

    async fn stats(&self) -> ControlReply {
        let table = self.table.lock().await;
        let routes = table
            .served
            .values()
            .map(|s| {
                let c = s.route.stats();
                RouteStats {
                    listen: s.route.listen,
                    mode: s.route.mode,
                    serving: c.serving,
                    draining: c.draining,
                    totals: c.totals,
                    unavailable: c.unavailable,
                }
            })
            .collect();
        ControlReply {
            ok: true,
            routes,
            ..Default::default()
        }
    }

    /// Serves a new route on `listener`, on every worker.
    fn serve(&self, spec: &RouteSpec, listener: std::net::TcpListener) -> Served {
        let route = Arc::new(Route::new(spec));
        let tasks = self.workers.serve(&listener, &route);
        Served {
            route,
            listener,
            tasks,
        }
    }

    /// Writes every route to the routes file, after letting go of the table. A failure
    /// (a full disk) is logged, not answered: the route serves, and the agent sends every
    /// route to a proxy started again.
    async fn persist(&self, table: tokio::sync::MutexGuard<'_, Table>) {
        let writing = self.writing.lock().await;
        let specs = specs(&table);
        drop(table);
        if let Err(e) = routes_file::write(&self.file, &specs).await {
            tracing::error!(file = %self.file.display(), error = %e, "cannot write the routes file (the routes serve; a proxy started again gets them from the agent)");
        }
        drop(writing);
    }
}

/// Refuses a request older than the newest one applied for `listen` (0: not numbered).
fn stale_check(table: &Table, listen: SocketAddr, generation: u64) -> Result<(), Refusal> {
    match table.newest.get(&listen) {
        Some(&newest) if generation > 0 && generation < newest => Err(Refusal {
            error: format!(
                "generation {generation} of {listen} is older than {newest}: not applied"
            ),
            stale: true,
        }),
        _ => Ok(()),
    }
}

/// The socket a new route listens on: the agent's, else an inherited one, else a new one.
fn listening(
    table: &mut Table,
    spec: &RouteSpec,
    socket: Option<OwnedFd>,
) -> Result<std::net::TcpListener, String> {
    let inherited = table.spare.remove(&spec.listen);
    let std = match (socket, inherited) {
        (Some(fd), _) => std::net::TcpListener::from(fd),
        (None, Some(l)) => l,
        (None, None) => std::net::TcpListener::bind(spec.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", spec.listen))?,
    };
    match std.local_addr() {
        Ok(a) if a == spec.listen => {}
        Ok(a) => return Err(format!("the socket for {} listens on {a}", spec.listen)),
        Err(e) => return Err(format!("the socket for {}: {e}", spec.listen)),
    }
    std.set_nonblocking(true)
        .map_err(|e| format!("serving the socket of {}: {e}", spec.listen))?;
    Ok(std)
}

fn specs(table: &Table) -> Vec<RouteSpec> {
    let mut specs: Vec<RouteSpec> = table.served.values().map(|s| s.route.spec()).collect();
    specs.sort_by_key(|s| s.listen);
    specs
}

fn ok() -> ControlReply {
    ControlReply {
        ok: true,
        ..Default::default()
    }
}

fn failed(r: Refusal) -> ControlReply {
    ControlReply {
        ok: false,
        error: r.error,
        stale: r.stale,
        ..Default::default()
    }
}
