//! One request through the proxy: its headers set ([`super::forwarding`]), a backend
//! connection found ([`super::upstream`]: the client connection's own, an idle one, a new
//! one, or a wait for one up to the hold timeout, then a 503), sent again when the connection
//! turns out dead (a request that changes nothing and has no body), and the response streamed
//! back; an `Upgrade` (WebSocket) becomes a copy of bytes both ways.

use std::sync::Arc;

use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::body::ProxyBody;
use super::http::Ctx;
use super::timeouts::Busy;

/// Sends of one request: a connection found dead is followed by a fresh one.
const MAX_ATTEMPTS: u32 = 4;

pub(super) async fn forward(ctx: Arc<Ctx>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let busy = Some(ctx.clock.busy());
    let began = Instant::now();
    let route = &ctx.route;
    let upgrade = req.headers().contains_key(UPGRADE);
    ctx.forwarding.prepare(req.headers_mut(), upgrade);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    // A request without a body that changes nothing can be sent again when the connection
    // it went out on turns out dead (an app that was killed, a keep-alive it closed): a
    // copy is kept, unless it goes on a connection the app has just answered on.
    let replayable = !upgrade && replayable(&req);
    let mut replay = None;
    let mut req = req.map(|body| ProxyBody::to_app(body, ctx.clone()));
    let mut attempt = 0;
    let (sender, mut resp, in_flight) = loop {
        attempt += 1;
        let fresh = upgrade || attempt > 1;
        let Some((backend, mut sender, warm)) = ctx.upstream.sender(route, fresh, began).await
        else {
            route.count_unavailable(Some(began.elapsed()));
            if let Some((why, retry)) = route.why_asleep() {
                return asleep(&why, retry, busy);
            }
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "no instance of this deployment is healthy\n",
                busy,
            );
        };
        if replayable && !warm && replay.is_none() {
            replay = Some(Head::of(&req));
        }
        // In flight from the moment it is sent: a release drains until its app answered.
        let in_flight = backend.begin_owned();
        match sender.try_send_request(req).await {
            Ok(resp) => break (sender, resp, in_flight),
            Err(mut e) => {
                let backend = in_flight.backend();
                tracing::debug!(addr = %backend.spec.addr, error = %e.error(), "backend request failed");
                match e
                    .take_message()
                    .or_else(|| replay.as_ref().map(Head::request))
                {
                    Some(r) if attempt < MAX_ATTEMPTS => req = r,
                    _ => {
                        backend.finished(502, began.elapsed());
                        return plain(
                            StatusCode::BAD_GATEWAY,
                            "the app closed the connection\n",
                            busy,
                        );
                    }
                }
            }
        }
    };
    in_flight
        .backend()
        .finished(resp.status().as_u16(), began.elapsed());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                let counted = in_flight;
                if let (Ok(c), Ok(b)) = (client.await, backend_upgrade.await) {
                    if let Ok((to_app, from_app)) =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(b))
                            .await
                    {
                        counted.backend().bytes(to_app, from_app);
                    }
                }
            });
            return resp.map(|_| ProxyBody::holding(busy));
        }
    } else if !upgrade {
        ctx.upstream.keep(sender);
    }
    // The proxy's own version (RFC 9110, 6.2): an app that answers HTTP/1.0 (Python's
    // http.server) does not close the client's kept-alive connection.
    *resp.version_mut() = Version::HTTP_11;
    resp.map(move |body| ProxyBody::from_app(body, in_flight, busy))
}

/// Whether a request may be sent again: a method that changes nothing, and no body.
fn replayable<B: Body>(req: &Request<B>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && req.body().size_hint().exact() == Some(0)
}

/// What it takes to send a request without a body again.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: hyper::HeaderMap,
}

impl Head {
    fn of<B>(req: &Request<B>) -> Head {
        Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        }
    }

    fn request(&self) -> Request<ProxyBody> {
        let mut copy = Request::new(ProxyBody::empty());
        *copy.method_mut() = self.method.clone();
        *copy.uri_mut() = self.uri.clone();
        *copy.version_mut() = self.version;
        *copy.headers_mut() = self.headers.clone();
        copy
    }
}

fn plain(status: StatusCode, text: &'static str, busy: Option<Busy>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(
        hyper::body::Bytes::from_static(text.as_bytes()),
        busy,
    ));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    resp
}

/// A sleeping deployment that could not serve: 503, the reason, and when to try again.
fn asleep(why: &str, retry: std::time::Duration, busy: Option<Busy>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(
        hyper::body::Bytes::from(format!("{why}\n")),
        busy,
    ));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    headers.insert("retry-after", HeaderValue::from(retry.as_secs().max(1)));
    resp
}
