//! A backend of a route: one instance's private address and release, who must own its
//! listener, its requests in flight and its counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::counters::{Counters, Counts, Gauge};

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
    in_flight: Gauge,
    counters: Counters,
    /// The route's counters, which every request of every backend also goes to.
    route: Arc<Counters>,
}

impl Backend {
    pub(super) fn new(spec: BackendSpec, route: Arc<Counters>) -> Backend {
        Backend {
            spec,
            in_flight: Gauge::default(),
            counters: Counters::default(),
            route,
        }
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }

    /// Counts a request (or connection) as in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.clone().begin_owned()
    }

    /// [`Backend::begin`], keeping this reference.
    pub(crate) fn begin_owned(self: Arc<Self>) -> InFlight {
        self.in_flight.add(1);
        InFlight { backend: self }
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

    pub(super) fn stats(&self) -> BackendStats {
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

impl InFlight {
    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.add(-1);
    }
}
