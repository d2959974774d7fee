//! The threads that serve the routes, each with a single-threaded runtime of its own that
//! accepts on every route's listening socket (a duplicate of it, registered with that
//! runtime) and hands each connection it accepts to the thread with the fewest open (itself
//! when even), which serves both sides of each of its requests: nothing goes from thread to
//! thread on a request's path (as with HAProxy's threads). The control socket runs on the
//! process's main runtime.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::table::Route;
use super::{http, tcp};
use crate::spec::ProxyMode;

pub(super) struct Workers {
    /// None: the routes are served on the runtime of whoever sets them (unit tests).
    handles: Vec<Handle>,
    dispatch: Dispatch,
}

impl Workers {
    /// `n` threads, each running its own runtime until the process exits.
    pub(super) fn start(n: usize) -> std::io::Result<Workers> {
        super::counters::set_shards(n);
        let mut handles = Vec::new();
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("proxy-{i}"))
                .spawn(move || {
                    super::counters::enter_shard(i);
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => {
                            let _ = tx.send(Ok(runtime.handle().clone()));
                            runtime.block_on(std::future::pending::<()>());
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                })?;
            handles.push(rx.recv().map_err(std::io::Error::other)??);
        }
        let dispatch = Dispatch {
            shared: Some(Arc::new(Shared {
                open: handles.iter().map(|_| Open::default()).collect(),
                handles: handles.clone(),
            })),
        };
        Ok(Workers { handles, dispatch })
    }

    /// Serves on the caller's runtime (unit tests).
    #[cfg(test)]
    pub(super) fn here() -> Workers {
        Workers {
            handles: Vec::new(),
            dispatch: Dispatch { shared: None },
        }
    }

    /// Serves `route` on `listener` on every worker: the tasks that accept.
    pub(super) fn serve(
        &self,
        listener: &std::net::TcpListener,
        route: &Arc<Route>,
    ) -> Vec<JoinHandle<()>> {
        if self.handles.is_empty() {
            return accept_with(listener, route, &self.dispatch)
                .map(tokio::spawn)
                .into_iter()
                .collect();
        }
        self.handles
            .iter()
            .filter_map(|h| {
                let _entered = h.enter();
                accept_with(listener, route, &self.dispatch).map(|task| h.spawn(task))
            })
            .collect()
    }
}

/// The task that accepts on a duplicate of `listener`, registered with the current runtime.
fn accept_with(
    listener: &std::net::TcpListener,
    route: &Arc<Route>,
    dispatch: &Dispatch,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let accepting = listener
        .try_clone()
        .and_then(TcpListener::from_std)
        .map_err(|e| tracing::error!(listen = %route.listen, error = %e, "cannot serve a route's socket"))
        .ok()?;
    let (listener, route, dispatch) = (Arc::new(accepting), route.clone(), dispatch.clone());
    Some(async move {
        match route.mode {
            ProxyMode::Http => http::serve(listener, route, dispatch).await,
            ProxyMode::Tcp => tcp::serve(listener, route, dispatch).await,
        }
    })
}

/// Where an accepted connection is served.
#[derive(Clone)]
pub(super) struct Dispatch {
    /// None: here (unit tests).
    shared: Option<Arc<Shared>>,
}

struct Shared {
    handles: Vec<Handle>,
    open: Vec<Open>,
}

/// A worker's open connections, a cache line of its own.
#[derive(Default)]
#[repr(align(128))]
struct Open(AtomicUsize);

/// Counts a connection on its worker while it is served.
struct Counted(Arc<Shared>, usize);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open[self.1].0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Dispatch {
    /// Serves `stream` with `serve` on the worker with the fewest open connections.
    pub(super) fn spawn<F, Fut>(&self, stream: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(shared) = &self.shared else {
            tokio::spawn(serve(stream));
            return;
        };
        let here = super::counters::current_shard() % shared.handles.len();
        let open = |i: usize| shared.open[i].0.load(Ordering::Relaxed);
        let target = (0..shared.handles.len())
            .min_by_key(|&i| (open(i), i != here))
            .unwrap_or(here);
        shared.open[target].0.fetch_add(1, Ordering::Relaxed);
        let counted = Counted(shared.clone(), target);
        if target == here {
            tokio::spawn(async move {
                let _counted = counted;
                serve(stream).await
            });
            return;
        }
        // Registered again with the other worker's runtime.
        match stream.into_std() {
            Ok(std) => {
                shared.handles[target].spawn(async move {
                    let _counted = counted;
                    match TcpStream::from_std(std) {
                        Ok(stream) => serve(stream).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot hand a connection to a worker")
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection to a worker"),
        }
    }
}
