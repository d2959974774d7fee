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

mod backend;
mod body;
mod control;
mod counters;
mod error;
mod fdpass;
mod forward;
mod forwarding;
mod generation;
mod halves;
mod http;
mod lifecycle;
mod node;
mod pidfd;
mod reconcile;
mod routes_file;
mod server;
#[cfg(test)]
mod server_tests;
mod settings;
mod spawn;
mod stop;
mod table;
mod tcp;
mod timeouts;
mod upstream;
pub(crate) mod wake;
mod watch;
mod workers;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UnixListener;

pub(crate) use control::RouteStats;
pub(crate) use counters::{Counts, LATENCY_BOUNDS};
pub use fdpass::inherited_listener;
pub(crate) use node::NodeProxy;
pub(crate) use settings::{DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub(crate) use table::{BackendSpec, RouteSpec, Sleeping};
pub(crate) use watch::NOT_ANSWERING_STATE;

/// Runs the proxy: the listening sockets it inherited from the agent, the persisted routes
/// (what can be read of them), then the control socket, until killed.
pub async fn run(
    control: PathBuf,
    routes_file: PathBuf,
    inherited: Vec<std::net::TcpListener>,
    threads: Option<usize>,
) -> anyhow::Result<()> {
    raise_open_files_limit();
    // `DATA/proxy/routes.json`: the agent's space reserve is in DATA.
    if let Some(data_dir) = routes_file.parent().and_then(std::path::Path::parent) {
        crate::disk::reserve::install(data_dir);
    }
    wake::set_socket(wake::socket_beside(&control));
    let threads = threads.unwrap_or_else(default_threads).max(1);
    let workers = workers::Workers::start(threads)?;
    tracing::info!(threads, "node proxy serving threads");
    let proxy = Arc::new(server::Proxy::new(routes_file, inherited, workers));
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

/// The proxy's threads when the agent's config does not say: half the cores, at least one.
/// The apps behind it share the node, and each request costs an app at least what it costs
/// the proxy (on 2 cores shared with a client and an app, 1 thread serves more than 2).
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .max(1)
}

/// Raises the limit on open files to the hard limit: every connection of every deployment
/// of the node takes one (two while a request is on its way to the app).
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit are given a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "cannot read the open-file limit");
        return;
    }
    let was = lim.rlim_cur;
    if was >= lim.rlim_max {
        tracing::info!(open_files = was, "open-file limit");
        return;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        tracing::info!(
            open_files = lim.rlim_cur,
            was,
            "open-file limit raised to the hard limit"
        );
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, open_files = was, "cannot raise the open-file limit");
    }
}
