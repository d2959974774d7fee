//! The node proxy: a process of its own (`deploy-agent proxy`) that holds every public port
//! of the deployments released with `strategy: switch` and forwards to their instances'
//! private ports. It does not die with the agent: the agent starts it once in its own
//! session, re-adopts it after a restart and sets its routes over a Unix socket
//! ([`control`]); routes are persisted at every change, so a restarted proxy serves at once.
//! A new release starts beside the old one, the route switches to it when it is healthy,
//! and the old one drains ([`table`]): no request fails.

mod control;
mod counters;
mod http;
mod node;
mod stop;
mod table;
mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub(crate) use control::RouteStats;
pub(crate) use counters::{Counts, LATENCY_BOUNDS};
pub(crate) use node::NodeProxy;
pub(crate) use table::{BackendSpec, RouteSpec};

use control::{ControlReply, ControlRequest};
use table::Route;

use crate::spec::ProxyMode;

/// Each public address's route and the task that serves its listener.
type Routes = HashMap<SocketAddr, (Arc<Route>, JoinHandle<()>)>;

/// The proxy's routes and their listeners.
struct Proxy {
    routes: Mutex<Routes>,
    file: PathBuf,
}

/// Runs the proxy: the persisted routes first, then the control socket, until killed.
pub async fn run(control: PathBuf, routes_file: PathBuf) -> anyhow::Result<()> {
    // `DATA/proxy/routes.json`: the agent's space reserve is in DATA.
    if let Some(data_dir) = routes_file.parent().and_then(Path::parent) {
        crate::disk::reserve::install(data_dir);
    }
    let proxy = Arc::new(Proxy {
        routes: Mutex::default(),
        file: routes_file,
    });
    for spec in load(&proxy.file).await {
        if let Err(e) = proxy.set(spec.clone()).await {
            tracing::error!(listen = %spec.listen, error = %e, "cannot serve a persisted route");
        }
    }
    let _ = tokio::fs::remove_file(&control).await;
    let listener = UnixListener::bind(&control)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", control.display()))?;
    crate::auth::set_mode(&control, 0o600);
    tracing::info!(control = %control.display(), "node proxy ready");
    loop {
        let (stream, _) = listener.accept().await?;
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.serve_control(stream).await });
    }
}

impl Proxy {
    async fn serve_control(&self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply = match serde_json::from_str::<ControlRequest>(&line) {
                Ok(req) => self.handle(req).await,
                Err(e) => failed(format!("not a request: {e}")),
            };
            let mut out = serde_json::to_string(&reply).unwrap_or_default();
            out.push('\n');
            if write.write_all(out.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn handle(&self, req: ControlRequest) -> ControlReply {
        let done = match req {
            ControlRequest::SetRoute { route } => self.set(route).await,
            ControlRequest::RemoveRoute { listen } => self.remove(listen).await,
            ControlRequest::Stats => return self.stats().await,
        };
        match done {
            Ok(()) => ControlReply {
                ok: true,
                ..Default::default()
            },
            Err(e) => failed(e),
        }
    }

    /// Sets a route, listening on its address if it is new (or its mode changed).
    async fn set(&self, spec: RouteSpec) -> Result<(), String> {
        let mut routes = self.routes.lock().await;
        match routes.get(&spec.listen) {
            Some((route, _)) if route.mode == spec.mode => route.set(&spec),
            _ => {
                if let Some((_, task)) = routes.remove(&spec.listen) {
                    task.abort();
                }
                let listener = TcpListener::bind(spec.listen)
                    .await
                    .map_err(|e| format!("cannot listen on {}: {e}", spec.listen))?;
                let route = Arc::new(Route::new(&spec));
                let task = match spec.mode {
                    ProxyMode::Http => tokio::spawn(http::serve(listener, route.clone())),
                    ProxyMode::Tcp => tokio::spawn(tcp::serve(listener, route.clone())),
                };
                routes.insert(spec.listen, (route, task));
            }
        }
        tracing::info!(listen = %spec.listen, backends = ?spec.backends, "route set");
        self.persist(&routes).await
    }

    async fn remove(&self, listen: SocketAddr) -> Result<(), String> {
        let mut routes = self.routes.lock().await;
        if let Some((_, task)) = routes.remove(&listen) {
            task.abort();
            tracing::info!(%listen, "route removed");
        }
        self.persist(&routes).await
    }

    async fn stats(&self) -> ControlReply {
        let routes = self.routes.lock().await;
        let routes = routes
            .values()
            .map(|(r, _)| {
                let c = r.stats();
                RouteStats {
                    listen: r.listen,
                    mode: r.mode,
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

    /// Writes every route to the routes file (atomically, on a blocking thread).
    async fn persist(&self, routes: &Routes) -> Result<(), String> {
        let mut specs: Vec<RouteSpec> = routes.values().map(|(r, _)| r.spec()).collect();
        specs.sort_by_key(|s| s.listen);
        let json = serde_json::to_vec_pretty(&specs).map_err(|e| e.to_string())?;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || crate::fsmode::write_atomic(&file, &json))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

fn failed(error: String) -> ControlReply {
    ControlReply {
        ok: false,
        error,
        ..Default::default()
    }
}

/// The persisted routes; none when the file is missing or unreadable (logged).
async fn load(file: &Path) -> Vec<RouteSpec> {
    match tokio::fs::read(file).await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::error!(file = %file.display(), error = %e, "unreadable routes file");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}
