//! HTTP/1.1 through the proxy, with hyper on both sides: keep-alive, bodies streamed both
//! ways (never buffered), `Upgrade` (WebSocket) passed through, `X-Forwarded-For` and
//! `X-Forwarded-Proto` set, `Host` kept. A request waits for a backend (the route has
//! none, or none accepts a connection) up to the route's hold timeout, then gets a 503.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;

use super::BackendSpec;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[cfg(doc)]
use super::table::InFlight;
use super::table::{Backend, Route};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long a connection to a backend may take before another (or the hold) is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a held request tries the backends again (an app restarting on its port).
const HOLD_RETRY: Duration = Duration::from_millis(25);
/// Idle connections kept per backend.
const POOL_MAX: usize = 64;
/// Sends of one request: a connection found dead is followed by a fresh one.
const MAX_ATTEMPTS: u32 = 4;

/// Idle keep-alive connections to one backend.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(SocketAddr, SendRequest<ProxyBody>)>>,
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, s)| !s.is_closed());
        let i = idle.iter().position(|(a, s)| *a == addr && s.is_ready())?;
        Some(idle.swap_remove(i).1)
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<ProxyBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_MAX {
            idle.push((addr, sender));
        }
    }
}

/// Serves `route` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: Arc<TcpListener>, route: Arc<Route>) {
    let pool = Arc::new(Pool::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (route, pool) = (route.clone(), pool.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (route, pool) = (route.clone(), pool.clone());
                async move { Ok::<_, std::convert::Infallible>(forward(&route, &pool, peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

async fn forward(
    route: &Arc<Route>,
    pool: &Pool,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let began = tokio::time::Instant::now();
    let upgrade = req.headers().contains_key(UPGRADE);
    prepare_headers(&mut req, peer, upgrade);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    // A request without a body that changes nothing can be sent again when the connection
    // it went out on turns out dead (an app that was killed, a keep-alive it closed).
    let replay = (!upgrade && replayable(&req)).then(|| {
        let mut copy = Request::new(());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        copy
    });
    let counted = route.clone();
    let mut req = req.map(move |body| {
        Counted {
            body,
            count: Box::new(move |n| counted.bytes_to_app(n)),
        }
        .boxed()
    });
    let mut attempt = 0;
    let (backend, sender, mut resp, in_flight) = loop {
        attempt += 1;
        let Some((backend, mut sender)) = connect(route, pool, upgrade || attempt > 1).await else {
            route.count_unavailable(Some(began.elapsed()));
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "no instance of this deployment is healthy\n",
            );
        };
        // In flight from the moment it is sent: a release drains until its app answered.
        let in_flight = backend.begin();
        match sender.try_send_request(req).await {
            Ok(resp) => break (backend, sender, resp, in_flight),
            Err(mut e) => {
                tracing::debug!(addr = %backend.spec.addr, error = %e.error(), "backend request failed");
                let again = e.take_message().or_else(|| {
                    replay.as_ref().map(|r| {
                        let mut copy =
                            Request::new(Empty::new().map_err(|never| match never {}).boxed());
                        *copy.method_mut() = r.method().clone();
                        *copy.uri_mut() = r.uri().clone();
                        *copy.version_mut() = r.version();
                        *copy.headers_mut() = r.headers().clone();
                        copy
                    })
                });
                match again {
                    Some(r) if attempt < MAX_ATTEMPTS => req = r,
                    _ => {
                        backend.finished(502, began.elapsed());
                        return plain(StatusCode::BAD_GATEWAY, "the app closed the connection\n");
                    }
                }
            }
        }
    };
    let addr = backend.spec.addr;
    backend.finished(resp.status().as_u16(), began.elapsed());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            let counted = backend.clone();
            tokio::spawn(async move {
                let _held = in_flight;
                if let (Ok(c), Ok(b)) = (client.await, backend_upgrade.await) {
                    if let Ok((to_app, from_app)) =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(b))
                            .await
                    {
                        counted.bytes(to_app, from_app);
                    }
                }
            });
            return resp.map(|b| b.boxed());
        }
    } else if !upgrade {
        pool.put(addr, sender);
    }
    resp.map(move |body| {
        Counted {
            body,
            count: Box::new(move |n| {
                backend.bytes(0, n);
                let _in_flight = &in_flight;
            }),
        }
        .boxed()
    })
}

/// Whether a request may be sent again: a method that changes nothing, and no body.
fn replayable<B: Body>(req: &Request<B>) -> bool {
    use hyper::Method;
    matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && req.body().size_hint().exact() == Some(0)
}

/// A backend ready for a request: an idle connection, or a new one to the least busy
/// backend that accepts; waits (hold) while none does.
async fn connect(
    route: &Route,
    pool: &Pool,
    fresh: bool,
) -> Option<(Arc<Backend>, SendRequest<ProxyBody>)> {
    let deadline = tokio::time::Instant::now() + route.hold();
    let mut changes = route.changes();
    loop {
        let mut tried = Vec::new();
        while let Some(backend) = route.pick(&tried) {
            let addr = backend.spec.addr;
            tried.push(addr);
            if !fresh {
                if let Some(sender) = pool.take(addr) {
                    return Some((backend, sender));
                }
            }
            if let Some(sender) = open(&backend.spec).await {
                return Some((backend, sender));
            }
        }
        let wait = HOLD_RETRY.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if wait.is_zero() {
            return None;
        }
        // Woken early when the route changes (a new release, a restarted instance).
        let _ = tokio::time::timeout(wait, changes.changed()).await;
    }
}

/// A new HTTP/1 connection to `backend`, accepted by its owner's listener.
async fn open(backend: &BackendSpec) -> Option<SendRequest<ProxyBody>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr))
        .await
        .ok()?
        .ok()?;
    if !backend.accepted_by_owner(&stream) {
        return None;
    }
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Some(sender)
}

/// The forwarding headers; hop-by-hop ones are not passed on (except for an upgrade).
fn prepare_headers(req: &mut Request<Incoming>, peer: SocketAddr, upgrade: bool) {
    let headers = req.headers_mut();
    if !upgrade {
        headers.remove(CONNECTION);
    }
    for h in ["keep-alive", "proxy-connection", "te", "trailer"] {
        headers.remove(h);
    }
    let ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    resp
}

/// A body passed on as it comes, its data bytes counted. A response body also keeps its
/// request in flight until it ends (its counter holds the [`InFlight`]): a stream of
/// server-sent events is in flight for as long as it runs.
struct Counted {
    body: Incoming,
    count: Box<dyn Fn(u64) + Send + Sync>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                (self.count)(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
