//! The connections to the app behind one client connection. A client connection keeps the
//! connection to the backend its last request went to and sends its next request on it
//! (no lock, no search, no new connection: the usual case of a kept-alive client), and it
//! drives that connection itself, in its own task: a request and its response cross no other
//! task. A connection it lets go (the client left, the route switched, another backend was
//! picked) goes, idle, to the route's [`Pool`], where a new client connection takes it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::ProxyBody;
use super::table::{Backend, BackendSpec, Backends, Route};

pub(crate) type Sender = SendRequest<ProxyBody>;
/// A connection's own future: it reads and writes while it is polled.
type Driven = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// How long a connection to a backend may take before another (or the hold) is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a kept or pooled connection may take to be ready for the next request.
const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a held request tries the backends again (an app restarting on its port).
const HOLD_RETRY: Duration = Duration::from_millis(25);
/// Idle connections kept per route.
const POOL_MAX: usize = 64;
/// A kept connection the app answered on this recently is warm: the app has not closed it
/// for idling (no app closes an idle connection this soon), so a request on it needs no copy
/// to be sent again ([`super::forward`]).
const WARM: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An idle connection to a backend, not polled while it waits.
struct Idle {
    addr: SocketAddr,
    sender: Sender,
    conn: Driven,
}

/// Idle connections to a route's backends, newest last.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} idle)", lock(&self.idle).len())
    }
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<(Sender, Driven)> {
        let mut idle = lock(&self.idle);
        let i = idle.iter().rposition(|c| c.addr == addr)?;
        let c = idle.remove(i);
        Some((c.sender, c.conn))
    }

    fn put(&self, c: Idle) {
        let mut idle = lock(&self.idle);
        if idle.len() >= POOL_MAX {
            idle.remove(0);
        }
        idle.push(c);
    }

    /// Closes the idle connections to addresses `keep` refuses.
    pub(crate) fn retain(&self, keep: impl Fn(SocketAddr) -> bool) {
        lock(&self.idle).retain(|c| keep(c.addr));
    }
}

/// The backend connection of one client connection.
#[derive(Default)]
pub(crate) struct Upstream {
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The route's backends as this client connection last looked, and their version.
    backends: Option<(u64, Backends)>,
    /// The connection driven by this client connection, and where it goes.
    conn: Option<(SocketAddr, Driven)>,
    /// Its sender, while no request uses it, and when it was kept.
    sender: Option<Sender>,
    kept_at: Option<Instant>,
    /// The client connection's task, woken when a connection comes to be driven.
    waker: Option<Waker>,
}

impl Upstream {
    /// A backend of `route` ready for a request and its sender: the kept connection to the
    /// backend picked, else an idle one of the pool, else a new one (`fresh`: always new);
    /// waits (hold) while no backend accepts, up to the route's hold timeout from `began`.
    /// And whether it is the kept connection, warm ([`WARM`]).
    pub(crate) async fn sender(
        &self,
        route: &Route,
        fresh: bool,
        began: Instant,
    ) -> Option<(Arc<Backend>, Sender, bool)> {
        let mut tried = Vec::new();
        let mut changes = None;
        loop {
            while let Some(backend) = self.pick(route, &tried) {
                if let Some((sender, warm)) = self.ready(route, &backend.spec, fresh).await {
                    return Some((backend, sender, warm));
                }
                tried.push(backend.spec.addr);
            }
            // A sleeping deployment is woken (its failed wake answers at once).
            if !route.wake_if_sleeping() {
                return None;
            }
            // Woken early when the route changes (a new release, a restarted instance).
            let changes = changes.get_or_insert_with(|| route.changes());
            let deadline = began + route.hold();
            let wait = HOLD_RETRY.min(deadline.saturating_duration_since(Instant::now()));
            if wait.is_zero() {
                return None;
            }
            let _ = tokio::time::timeout(wait, changes.changed()).await;
            tried.clear();
        }
    }

    /// [`Route::pick`] among the backends this connection last saw, unless they changed.
    fn pick(&self, route: &Route, tried: &[SocketAddr]) -> Option<Arc<Backend>> {
        let mut slot = lock(&self.slot);
        let epoch = route.epoch();
        let backends = match &slot.backends {
            Some((seen, backends)) if *seen == epoch => backends,
            _ => &slot.backends.insert(route.backends()).1,
        };
        route.pick_from(backends, tried)
    }

    async fn ready(
        &self,
        route: &Route,
        backend: &BackendSpec,
        fresh: bool,
    ) -> Option<(Sender, bool)> {
        let addr = backend.addr;
        if !fresh {
            if let Some((sender, warm)) = self.kept(addr) {
                if let Some(sender) = ready(sender).await {
                    return Some((sender, warm));
                }
            }
            if let Some((sender, conn)) = route.pool().take(addr) {
                self.attach(route, addr, conn);
                if let Some(sender) = ready(sender).await {
                    return Some((sender, false));
                }
            }
        }
        let (sender, conn) = open(backend).await?;
        self.attach(route, addr, conn);
        Some((sender, false))
    }

    /// The kept connection's sender, when it goes to `addr` and is not closed, and whether
    /// it is warm.
    fn kept(&self, addr: SocketAddr) -> Option<(Sender, bool)> {
        let mut slot = lock(&self.slot);
        let warm = slot.kept_at.is_some_and(|at| at.elapsed() < WARM);
        match &slot.conn {
            Some((a, _)) if *a == addr => slot
                .sender
                .take()
                .filter(|s| !s.is_closed())
                .map(|s| (s, warm)),
            _ => None,
        }
    }

    /// Drives `conn` (to `addr`) from now on; the one driven before goes to the pool when it
    /// is idle and still routed to, else it is closed.
    fn attach(&self, route: &Route, addr: SocketAddr, conn: Driven) {
        let mut slot = lock(&self.slot);
        let before = slot.conn.replace((addr, conn));
        let sender = slot.sender.take();
        let waker = slot.waker.clone();
        drop(slot);
        if let (Some((addr, conn)), Some(sender)) = (before, sender) {
            pool(route, addr, sender, conn);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// After a response's head: `sender` is for the next request of this client connection.
    pub(crate) fn keep(&self, sender: Sender) {
        let mut slot = lock(&self.slot);
        slot.sender = Some(sender);
        slot.kept_at = Some(Instant::now());
    }

    /// Polls the connection this client connection drives. Never resolves: the client
    /// connection ends it.
    pub(crate) fn poll_drive(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = lock(&self.slot);
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        if let Some((_, conn)) = slot.conn.as_mut() {
            // Closed, failed, or handed over to an upgrade.
            if conn.as_mut().poll(cx).is_ready() {
                slot.conn = None;
                slot.sender = None;
            }
        }
        Poll::Pending
    }

    /// The client connection ended: its connection, when idle, goes to the pool.
    pub(crate) fn release(&self, route: &Route) {
        let mut slot = lock(&self.slot);
        let (conn, sender) = (slot.conn.take(), slot.sender.take());
        drop(slot);
        if let (Some((addr, conn)), Some(sender)) = (conn, sender) {
            pool(route, addr, sender, conn);
        }
    }
}

/// Puts an idle connection in the route's pool, unless it cannot take another request or
/// its backend is no longer routed to (then it is closed).
fn pool(route: &Route, addr: SocketAddr, sender: Sender, conn: Driven) {
    if sender.is_ready() && route.routes_to(addr) {
        route.pool().put(Idle { addr, sender, conn });
    }
}

/// `sender` once its connection can take a request (driven meanwhile by the client
/// connection's task), or `None` when it is closed or does not get ready soon.
async fn ready(mut sender: Sender) -> Option<Sender> {
    if sender.is_ready() {
        return Some(sender);
    }
    match tokio::time::timeout(READY_TIMEOUT, sender.ready()).await {
        Ok(Ok(())) => Some(sender),
        _ => None,
    }
}

/// A new HTTP/1 connection to `backend`, accepted by its owner's listener.
async fn open(backend: &BackendSpec) -> Option<(Sender, Driven)> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr))
        .await
        .ok()?
        .ok()?;
    if !backend.accepted_by_owner(&stream) {
        return None;
    }
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        // One write of a request's head and a small body, not a vector of two.
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .ok()?;
    Some((sender, Box::pin(conn.with_upgrades())))
}
