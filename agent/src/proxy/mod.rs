//! The node proxy: a process of its own (`deploy-agent proxy`) that holds every public port
//! of the deployments released with `strategy: switch` and forwards to their instances'
//! private ports. It does not die with the agent: the agent starts it once in its own
//! session, re-adopts it after a restart and sets its routes over a Unix socket
//! ([`control`]); routes are persisted at every change, so a restarted proxy serves at once.
//! A new release starts beside the old one, the route switches to it when it is healthy,
//! and the old one drains ([`table`]): no request fails.
//!
//! The agent watches it ([`watch`]): it learns of its exit at once (a pidfd), pings it every
//! second and replaces one that does not answer, and keeps a duplicate of every listening
//! socket ([`fdpass`]) that it hands to the next proxy, so a proxy's death refuses no
//! connection. Every route carries a generation ([`generation`]); the agent compares the
//! proxy's table with what it decided and repairs any difference ([`reconcile`]).

mod control;
mod counters;
mod fdpass;
mod generation;
mod http;
mod lifecycle;
mod node;
mod pidfd;
mod reconcile;
mod routes_file;
mod server;
#[cfg(test)]
mod server_tests;
mod spawn;
mod stop;
mod table;
mod tcp;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UnixListener;

pub(crate) use control::RouteStats;
pub(crate) use counters::{Counts, LATENCY_BOUNDS};
pub use fdpass::inherited_listener;
pub(crate) use node::NodeProxy;
pub(crate) use table::{BackendSpec, RouteSpec};
pub(crate) use watch::NOT_ANSWERING_STATE;

/// Runs the proxy: the listening sockets it inherited from the agent, the persisted routes
/// (what can be read of them), then the control socket, until killed.
pub async fn run(
    control: PathBuf,
    routes_file: PathBuf,
    inherited: Vec<std::net::TcpListener>,
) -> anyhow::Result<()> {
    // `DATA/proxy/routes.json`: the agent's space reserve is in DATA.
    if let Some(data_dir) = routes_file.parent().and_then(std::path::Path::parent) {
        crate::disk::reserve::install(data_dir);
    }
    let proxy = Arc::new(server::Proxy::new(routes_file, inherited));
    proxy.load().await;
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
