//! Refused requests in the agent's log: who knocked (the peer address, the user when the
//! token was a real one that expired) and at which RPC, so an operator sees a leaked or
//! stale token being tried. Rate-limited per peer address, so a client in a retry loop (or
//! someone guessing tokens) cannot flood the log: at most one line per address per
//! [`WINDOW`], the next line saying how many were left out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;

/// At most one line per peer address in this time.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Addresses remembered at most; beyond it the ones whose window is over are forgotten
/// (so many addresses cannot make the map grow without bound).
const MAX_PEERS: usize = 4096;

/// The refusals seen, per peer address.
#[derive(Default)]
pub(crate) struct RefusalLog {
    peers: Mutex<HashMap<Option<IpAddr>, Peer>>,
}

struct Peer {
    /// When a line was last written for this address.
    logged: Instant,
    /// Refusals since then that were not written.
    suppressed: u64,
}

impl RefusalLog {
    /// Logs one refusal at warn level, unless this address had a line within [`WINDOW`].
    pub(crate) fn refused(
        &self,
        peer: Option<SocketAddr>,
        method: &str,
        user: Option<&str>,
        why: &str,
    ) {
        let Some(suppressed) = self.admit(peer.map(|p| p.ip()), Instant::now()) else {
            return;
        };
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        // `suppressed`: refusals from this address since its last line, not logged.
        tracing::warn!(%peer, method, user, reason = why, suppressed, "refused a request");
    }

    /// Whether a line is due for `ip` at `now`: the refusals left out since its last line.
    fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get_mut(&ip) {
            if now.saturating_duration_since(p.logged) < WINDOW {
                p.suppressed += 1;
                return None;
            }
            let suppressed = std::mem::take(&mut p.suppressed);
            p.logged = now;
            return Some(suppressed);
        }
        if peers.len() >= MAX_PEERS {
            peers.retain(|_, p| now.saturating_duration_since(p.logged) < WINDOW);
        }
        // Still full: the map stays bounded; forgetting only loses suppressed counts.
        if peers.len() >= MAX_PEERS {
            peers.clear();
        }
        peers.insert(
            ip,
            Peer {
                logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

/// The path of the gRPC method a request is for (`/deploy.v1.Agent/Status`), put in the
/// request's extensions by [`WithMethod`]: an interceptor sees no URI.
#[derive(Debug, Clone)]
pub(crate) struct RpcMethod(pub String);

/// Wraps a gRPC service so its interceptor knows which method was called.
#[derive(Debug, Clone)]
pub(crate) struct WithMethod<S>(pub S);

impl<S, B> Service<http::Request<B>> for WithMethod<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let method = RpcMethod(req.uri().path().to_string());
        req.extensions_mut().insert(method);
        self.0.call(req)
    }
}

impl<S: NamedService> NamedService for WithMethod<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_address_per_window_with_the_count_left_out() {
        let log = RefusalLog::default();
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!(log.admit(a, t0), Some(0));
        for i in 1..50 {
            assert_eq!(log.admit(a, t0 + Duration::from_millis(i * 100)), None);
        }
        // Another address is not held back by the first.
        assert_eq!(log.admit(b, t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(log.admit(a, t0 + WINDOW), Some(49));
        assert_eq!(log.admit(a, t0 + WINDOW + Duration::from_secs(1)), None);
        assert_eq!(log.admit(a, t0 + WINDOW * 2), Some(1));
    }

    #[test]
    fn many_addresses_stay_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 10) {
            let ip = Some(IpAddr::from(i.to_be_bytes()));
            assert_eq!(log.admit(ip, t0), Some(0));
        }
        assert!(log.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
