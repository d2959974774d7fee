//! HTTP/1.1 through the proxy, with hyper on both sides: keep-alive, bodies streamed both
//! ways (never buffered), `Upgrade` (WebSocket) passed through, `X-Forwarded-For` and
//! `X-Forwarded-Proto` set ([`super::forwarding`]), `Host` kept. A request waits for a
//! backend (the route has none, or none accepts a connection) up to the route's hold
//! timeout, then gets a 503 ([`super::forward`]).
//!
//! Each client connection is one task: it serves the client, drives its connection to the
//! backend ([`super::upstream`]) and closes the client's connection when a request's head
//! is too slow or the connection idles too long ([`super::timeouts`]). A route takes at most
//! its `max_connections`; one more is answered 503 and closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::forward::forward;
use super::forwarding::Forwarding;
use super::halves::Halves;
use super::table::{Admitted, Route};
use super::timeouts::{Clock, Expiry, Watched};
use super::upstream::Upstream;
use super::workers::Dispatch;

/// What a client connection's requests share.
pub(super) struct Ctx {
    pub route: Arc<Route>,
    pub upstream: Upstream,
    pub forwarding: Forwarding,
    pub clock: Arc<Clock>,
}

/// Serves `route` on `listener` until the task is aborted.
pub(crate) async fn serve(listener: Arc<TcpListener>, route: Arc<Route>, dispatch: Dispatch) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of files, most likely: the connections waiting are accepted later.
                tracing::warn!(error = %e, "proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match route.admit() {
            Ok(admitted) => {
                dispatch.spawn(stream, move |stream| connection(stream, peer, admitted));
            }
            Err(limit) => {
                tokio::spawn(refuse(stream, limit));
            }
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, admitted: Admitted) {
    let _ = stream.set_nodelay(true);
    let settings = admitted.settings.clone();
    let clock = Clock::new();
    let ctx = Arc::new(Ctx {
        route: admitted.route.clone(),
        upstream: Upstream::default(),
        forwarding: Forwarding::new(peer.ip(), &settings),
        clock: clock.clone(),
    });
    let service = {
        let ctx = ctx.clone();
        hyper::service::service_fn(move |req| {
            let ctx = ctx.clone();
            async move { Ok::<_, Infallible>(forward(ctx, req).await) }
        })
    };
    let served = hyper::server::conn::http1::Builder::new()
        // One write of the response's head and a small body, not a vector of two.
        .writev(false)
        .serve_connection(TokioIo::new(Watched::new(stream, clock.clone())), service)
        .with_upgrades();
    let driven = std::future::poll_fn(|cx| ctx.upstream.poll_drive(cx));
    let served = std::pin::pin!(served);
    let halves = Halves::new(served, driven);
    let mut expiry = Expiry::new(clock, settings.header_timeout(), settings.idle_timeout());
    let expired = std::future::poll_fn(|cx| expiry.poll_expired(cx));
    tokio::select! {
        biased;
        _ = halves => {}
        _ = expired => {}
    }
    ctx.upstream.release(&ctx.route);
}

/// Answers a connection beyond the route's limit with a 503 and closes it. What the client
/// sends meanwhile is read (for a second at most), so that closing does not reset the
/// connection before it has read the answer.
async fn refuse(mut stream: TcpStream, limit: u32) {
    let body = format!(
        "this deployment has {limit} connections open, as many as the node proxy takes (the agent's proxy_max_connections)\n"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < 64 * 1024 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}
