//! The proxy's routes: for each public address, its mode, its backends (the instances
//! that serve it now, each with its in-flight count) and the backends it served before
//! that still finish requests (draining). Choosing a backend is least outstanding
//! requests; a request that finds none waits for one (hold) up to the route's hold timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub(crate) use super::backend::{Backend, BackendSpec, BackendStats, InFlight};
use super::counters::{Counters, Counts};
use super::settings::ConnSettings;
use super::upstream::Pool;
use super::wake::WakeState;
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
    /// The agent's settings for its connections: timeouts, their number, trusted proxies.
    #[serde(default)]
    pub connections: ConnSettings,
    /// Set while the deployment sleeps (no backends): a request wakes it ([`super::wake`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleeping: Option<Sleeping>,
}

/// A sleeping deployment's route: how long a request waits for it to wake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sleeping {
    pub wake_timeout_ms: u64,
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
    /// Bumped at every change of the backends (see [`Route::backends`]).
    epoch: AtomicU64,
    /// Client connections open, and those refused for being one too many.
    open: AtomicU32,
    refused: AtomicU64,
    /// When a refusal was last logged (ms since the route was made; 0: never).
    refusal_said: AtomicU64,
    made: std::time::Instant,
    /// Idle connections to the backends (HTTP).
    pool: Pool,
    /// Waking it while it sleeps.
    wake: Arc<WakeState>,
}

#[derive(Debug)]
struct RouteState {
    backends: Backends,
    /// Backends no longer routed to, kept until their last request ends.
    draining: Vec<Arc<Backend>>,
    hold: Duration,
    /// While it sleeps: how long a request waits for it to wake.
    sleeping: Option<Duration>,
    name: String,
    generation: u64,
    connections: Arc<ConnSettings>,
}

fn sleeping(spec: &RouteSpec) -> Option<Duration> {
    spec.sleeping
        .as_ref()
        .map(|s| Duration::from_millis(s.wake_timeout_ms))
}

/// The backends of a route at one moment.
pub(crate) type Backends = Arc<[Arc<Backend>]>;

/// A client connection the route took: counted until dropped.
pub(crate) struct Admitted {
    pub route: Arc<Route>,
    pub settings: Arc<ConnSettings>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.route.open.fetch_sub(1, Ordering::Relaxed);
    }
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
                sleeping: sleeping(spec),
                name: spec.name.clone(),
                generation: spec.generation,
                connections: Arc::new(spec.connections.clone()),
            }),
            changed: watch::channel(0).0,
            totals,
            unavailable: AtomicU64::new(0),
            turn: Default::default(),
            epoch: AtomicU64::new(0),
            open: AtomicU32::new(0),
            refused: AtomicU64::new(0),
            refusal_said: AtomicU64::new(0),
            made: std::time::Instant::now(),
            pool: Pool::default(),
            wake: Default::default(),
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
        s.sleeping = sleeping(spec);
        if s.sleeping.is_none() {
            self.wake.clear();
        }
        s.name.clone_from(&spec.name);
        s.generation = spec.generation;
        if *s.connections != spec.connections {
            s.connections = Arc::new(spec.connections.clone());
        }
        let old = std::mem::replace(&mut s.backends, Arc::new([]));
        let (kept, gone): (Vec<_>, Vec<_>) = old
            .iter()
            .cloned()
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
        // Before the lock goes: whoever sees the new number reads the new backends.
        self.epoch.fetch_add(1, Ordering::Release);
        drop(s);
        // Idle connections to a backend no longer routed to are closed.
        self.pool
            .retain(|addr| spec.backends.iter().any(|b| b.addr == addr));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Takes a client connection, or refuses it (one more than the limit, given).
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Admitted, u32> {
        let settings = self.state().connections.clone();
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        if open >= settings.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused(settings.max_connections);
            return Err(settings.max_connections);
        }
        Ok(Admitted {
            route: self.clone(),
            settings,
        })
    }

    /// Counts a refused connection; said in the log at most every 10 s.
    fn refused(&self, limit: u32) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(self.made.elapsed().as_millis()).unwrap_or(u64::MAX);
        let said = self.refusal_said.load(Ordering::Relaxed);
        if (said == 0 || now.saturating_sub(said) >= 10_000)
            && self
                .refusal_said
                .compare_exchange(said, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let name = self.state().name.clone();
            tracing::warn!(deployment = %name, listen = %self.listen, limit, refused = n, "a deployment has as many connections open as it may (proxy_max_connections): new ones are refused");
        }
    }

    /// Whether new requests may go to `addr`.
    pub(crate) fn routes_to(&self, addr: SocketAddr) -> bool {
        self.state().backends.iter().any(|b| b.spec.addr == addr)
    }

    /// Idle connections to the route's backends.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
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
            connections: (*s.connections).clone(),
            sleeping: s.sleeping.map(|d| Sleeping {
                wake_timeout_ms: d.as_millis() as u64,
            }),
        }
    }

    /// The backend with the fewest requests in flight, skipping `tried`; among equals, the
    /// next one after the last pick (round robin while none is busy).
    pub(crate) fn pick(&self, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        self.pick_from(&self.state().backends, tried)
    }

    /// [`Route::pick`] among `backends` (as [`Route::backends`] gave them).
    pub(crate) fn pick_from(
        &self,
        backends: &[Arc<Backend>],
        tried: &[SocketAddr],
    ) -> Option<Arc<Backend>> {
        let n = backends.len();
        let start = match n {
            0 => return None,
            1 => 0,
            _ => self.turn.fetch_add(1, Ordering::Relaxed) % n,
        };
        (0..n)
            .map(|i| &backends[(start + i) % n])
            .filter(|b| !tried.contains(&b.spec.addr))
            .min_by_key(|b| b.in_flight())
            .cloned()
    }

    /// The backends new requests go to, and the number of that version of them: a client
    /// connection keeps them (no lock per request) until [`Route::epoch`] says otherwise.
    pub(crate) fn backends(&self) -> (u64, Backends) {
        let s = self.state();
        (self.epoch.load(Ordering::Acquire), s.backends.clone())
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// How long a request may wait for a backend (the wake timeout while it sleeps).
    pub(crate) fn hold(&self) -> Duration {
        let s = self.state();
        s.sleeping.unwrap_or(s.hold)
    }

    /// A request found no backend: when the deployment sleeps, the agent is asked to wake
    /// it (once). False when the wait is pointless: a failed wake still holds.
    pub(crate) fn wake_if_sleeping(&self) -> bool {
        let (within, name) = {
            let s = self.state();
            match s.sleeping {
                Some(within) => (within, s.name.clone()),
                None => return true,
            }
        };
        if self.wake.failure().is_some() {
            return false;
        }
        self.wake.start(self.listen, &name, within);
        true
    }

    /// Why a sleeping deployment could not serve a request (a failed wake, or one that
    /// took longer than the wake timeout) and when to try again; `None` when it is awake.
    pub(crate) fn why_asleep(&self) -> Option<(String, Duration)> {
        let within = self.state().sleeping?;
        Some(self.wake.failure().unwrap_or_else(|| {
            (
                format!(
                    "the app is sleeping and did not wake within its wake_timeout ({}s)",
                    within.as_secs()
                ),
                Duration::from_secs(5),
            )
        }))
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
