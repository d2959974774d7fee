//! The proxy's routes: for each public address, its mode, its backends (the instances
//! that serve it now, each with its in-flight count) and the backends it served before
//! that still finish requests (draining). Choosing a backend is least outstanding
//! requests; a request that finds none waits for one (hold) up to the route's hold timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::counters::{Counters, Counts};
use crate::spec::ProxyMode;

/// A route as it is set over the control socket and persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RouteSpec {
    /// The public address the proxy listens on.
    pub listen: SocketAddr,
    pub mode: ProxyMode,
    pub backends: Vec<BackendSpec>,
    pub hold_timeout_ms: u64,
    /// The deployment it serves (for people reading `routes.json`, and the agent's and
    /// `deployctl local stop`'s words on what the proxy keeps serving).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The agent's number for this version of the route ([`super::generation`]): the proxy
    /// never applies one older than what it has for the address. 0: not numbered.
    #[serde(default)]
    pub generation: u64,
}

impl RouteSpec {
    /// Whether `other` routes the same way (its generation aside).
    pub(crate) fn routes_like(&self, other: &RouteSpec) -> bool {
        RouteSpec {
            generation: other.generation,
            ..self.clone()
        } == *other
    }
}

/// One instance behind a route: its private address and the release it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BackendSpec {
    pub addr: SocketAddr,
    pub release: u32,
    /// The uid its listener must belong to (the deployment's own user): a connection
    /// another user's process accepted on that port is dropped, never sent a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

impl BackendSpec {
    /// Whether the connection `stream` to this backend was accepted by a socket of its
    /// owner (always, without an owner to check). A few microseconds (netlink).
    pub(crate) fn accepted_by_owner(&self, stream: &tokio::net::TcpStream) -> bool {
        let Some(owner) = self.owner else {
            return true;
        };
        let Ok(local) = stream.local_addr() else {
            return false;
        };
        match crate::sockowner::peer_uid(local, self.addr) {
            Ok(Some(uid)) if uid == owner => true,
            Ok(Some(uid)) => {
                tracing::warn!(backend = %self.addr, expected = owner, found = uid, "another user's process listens on a deployment's private port: not routed to");
                false
            }
            Ok(None) => false,
            // The kernel cannot say (no sock_diag): do not block the deployment.
            Err(e) => {
                tracing::debug!(error = %e, "socket owner unknown");
                true
            }
        }
    }
}

/// Counts of a backend, as `stats` reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BackendStats {
    pub addr: Option<SocketAddr>,
    pub release: u32,
    /// Requests (HTTP) or connections (TCP) not finished yet.
    pub in_flight: u64,
    #[serde(default)]
    pub counts: Counts,
}

/// A backend while it serves or drains.
#[derive(Debug)]
pub(crate) struct Backend {
    pub spec: BackendSpec,
    in_flight: AtomicU64,
    counters: Counters,
    /// The route's counters, which every request of every backend also goes to.
    route: Arc<Counters>,
}

impl Backend {
    fn new(spec: BackendSpec, route: Arc<Counters>) -> Backend {
        Backend {
            spec,
            in_flight: AtomicU64::new(0),
            counters: Counters::default(),
            route,
        }
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request (or connection) as in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            backend: self.clone(),
        }
    }

    /// Counts a finished request: its status and how long its response's head took.
    pub(crate) fn finished(&self, status: u16, latency: Duration) {
        self.counters.request(status, latency);
        self.route.request(status, latency);
    }

    /// Counts a finished TCP connection and the bytes it carried.
    pub(crate) fn connection_closed(&self, to_app: u64, from_app: u64) {
        for c in [&self.counters, &*self.route] {
            c.connection();
            c.bytes(to_app, from_app);
        }
    }

    /// Counts bytes of an HTTP request or response body.
    pub(crate) fn bytes(&self, to_app: u64, from_app: u64) {
        self.counters.bytes(to_app, from_app);
        self.route.bytes(to_app, from_app);
    }

    fn stats(&self) -> BackendStats {
        BackendStats {
            addr: Some(self.spec.addr),
            release: self.spec.release,
            in_flight: self.in_flight(),
            counts: self.counters.counts(),
        }
    }
}

/// A request (or connection) in flight on a backend.
#[derive(Debug)]
pub(crate) struct InFlight {
    backend: Arc<Backend>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A route's counts at one moment.
pub(crate) struct RouteCounts {
    pub serving: Vec<BackendStats>,
    pub draining: Vec<BackendStats>,
    pub totals: Counts,
    pub unavailable: u64,
}

/// One public address and who serves it.
#[derive(Debug)]
pub(crate) struct Route {
    pub listen: SocketAddr,
    pub mode: ProxyMode,
    state: Mutex<RouteState>,
    /// Bumped at every change of the backends, so held requests wake up.
    changed: watch::Sender<u64>,
    /// Everything the route served (every backend's requests, and the ones none took).
    totals: Arc<Counters>,
    unavailable: AtomicU64,
    /// Where the next pick starts looking.
    turn: std::sync::atomic::AtomicUsize,
}

#[derive(Debug)]
struct RouteState {
    backends: Vec<Arc<Backend>>,
    /// Backends no longer routed to, kept until their last request ends.
    draining: Vec<Arc<Backend>>,
    hold: Duration,
    name: String,
    generation: u64,
}

impl Route {
    pub(crate) fn new(spec: &RouteSpec) -> Route {
        let totals = Arc::new(Counters::default());
        Route {
            listen: spec.listen,
            mode: spec.mode,
            state: Mutex::new(RouteState {
                backends: spec
                    .backends
                    .iter()
                    .cloned()
                    .map(|b| Arc::new(Backend::new(b, totals.clone())))
                    .collect(),
                draining: Vec::new(),
                hold: Duration::from_millis(spec.hold_timeout_ms),
                name: spec.name.clone(),
                generation: spec.generation,
            }),
            changed: watch::channel(0).0,
            totals,
            unavailable: AtomicU64::new(0),
            turn: Default::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, RouteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Routes new requests to `backends` from now on; the ones it replaces drain. A backend
    /// that stays (same address and release) keeps its counts.
    pub(crate) fn set(&self, spec: &RouteSpec) {
        let mut s = self.state();
        s.hold = Duration::from_millis(spec.hold_timeout_ms);
        s.name.clone_from(&spec.name);
        s.generation = spec.generation;
        let old = std::mem::take(&mut s.backends);
        let (kept, gone): (Vec<_>, Vec<_>) = old
            .into_iter()
            .partition(|b| spec.backends.contains(&b.spec));
        s.backends = spec
            .backends
            .iter()
            .map(|b| {
                kept.iter()
                    .find(|k| k.spec == *b)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(b.clone(), self.totals.clone())))
            })
            .collect();
        s.draining.extend(gone);
        s.draining.retain(|b| b.in_flight() > 0);
        drop(s);
        self.changed.send_modify(|n| *n += 1);
    }

    /// What `set` was last given.
    pub(crate) fn spec(&self) -> RouteSpec {
        let s = self.state();
        RouteSpec {
            listen: self.listen,
            mode: self.mode,
            backends: s.backends.iter().map(|b| b.spec.clone()).collect(),
            hold_timeout_ms: s.hold.as_millis() as u64,
            name: s.name.clone(),
            generation: s.generation,
        }
    }

    /// The backend with the fewest requests in flight, skipping `tried`; among equals, the
    /// next one after the last pick (round robin while none is busy).
    pub(crate) fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let s = self.state();
        let n = s.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &s.backends[(start + i) % n])
            .filter(|b| !tried.contains(&b.spec.addr))
            .min_by_key(|b| b.in_flight())
            .cloned()
    }

    /// How long a request may wait for a backend.
    pub(crate) fn hold(&self) -> Duration {
        self.state().hold
    }

    /// Resolves at the next change of the backends.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// A request (or connection) that found no backend within the hold timeout; an HTTP
    /// one was answered 503 after `held`.
    pub(crate) fn count_unavailable(&self, held: Option<Duration>) {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        if let Some(held) = held {
            self.totals.request(503, held);
        }
    }

    /// Counts request body bytes (the backend is not known until the request is sent).
    pub(crate) fn bytes_to_app(&self, n: u64) {
        self.totals.bytes(n, 0);
    }

    /// The backends' counts, serving ones first, then draining ones; the route's totals;
    /// and the requests none took.
    pub(crate) fn stats(&self) -> RouteCounts {
        let mut s = self.state();
        s.draining.retain(|b| b.in_flight() > 0);
        RouteCounts {
            serving: s.backends.iter().map(|b| b.stats()).collect(),
            draining: s.draining.iter().map(|b| b.stats()).collect(),
            totals: self.totals.counts(),
            unavailable: self.unavailable.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
