//! When the proxy closes an HTTP connection of its own accord: a request's head that has not
//! fully arrived `header_timeout` after the connection opened, or after its first byte on a
//! kept-alive connection (a slowloris client sends a few bytes now and then: the time counts
//! from the first); and a kept-alive connection with no request for `idle_timeout`. Never
//! while a request is answered (a long upload, a stream of events).
//!
//! Cheap on the path of every request: a few relaxed atomics and a clock read when the
//! connection changes phase, and one timer per connection that is set again only when it
//! fires (every timeout or so), not at every request.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// One connection's phase: waiting for a request's head (since when), answering, or idle
/// between requests (since when).
#[derive(Debug)]
pub(crate) struct Clock {
    /// Requests being answered.
    busy: AtomicU32,
    /// A request's head is on its way (the connection is new, or bytes came while idle).
    head: AtomicBool,
    /// Milliseconds (on [`now_ms`]'s clock) when the current wait began.
    since: AtomicU64,
}

impl Clock {
    /// A new connection: waiting for its first request's head.
    pub(crate) fn new() -> Arc<Clock> {
        Arc::new(Clock {
            busy: AtomicU32::new(0),
            head: AtomicBool::new(true),
            since: AtomicU64::new(now_ms()),
        })
    }

    /// A request's head arrived: the connection is busy until the [`Busy`] is dropped (with
    /// the response, once it has been sent).
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head.store(false, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Bytes came from the client.
    fn read(&self) {
        if !self.head.load(Ordering::Relaxed) && self.busy.load(Ordering::Relaxed) == 0 {
            self.since.store(now_ms(), Ordering::Relaxed);
            self.head.store(true, Ordering::Relaxed);
        }
    }

    /// When the connection is to be closed (ms), or `None` while it answers.
    fn deadline(&self, header_ms: u64, idle_ms: u64) -> Option<u64> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.since.load(Ordering::Relaxed);
        let wait = if self.head.load(Ordering::Relaxed) {
            header_ms
        } else {
            idle_ms
        };
        Some(since.saturating_add(wait))
    }
}

/// A request being answered; the connection is idle from its drop.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.since.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// Milliseconds since the proxy first asked.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Resolves when the connection has waited too long (see [`Clock`]). Its timer is looked at
/// only once it has fired, not at every wake of the connection.
pub(crate) struct Expiry {
    clock: Arc<Clock>,
    header_ms: u64,
    idle_ms: u64,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Expiry {
    pub(crate) fn new(clock: Arc<Clock>, header: Duration, idle: Duration) -> Expiry {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Expiry {
            clock,
            header_ms: ms(header),
            idle_ms: ms(idle),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed && !self.sleep.is_elapsed() {
            return Poll::Pending;
        }
        loop {
            let now = now_ms();
            let wait = match self.clock.deadline(self.header_ms, self.idle_ms) {
                Some(at) if at <= now => return Poll::Ready(()),
                Some(at) => at - now,
                // Answering: look again later.
                None => self.header_ms.min(self.idle_ms),
            };
            let at = Instant::now() + Duration::from_millis(wait);
            self.sleep.as_mut().reset(at);
            if self.sleep.as_mut().poll(cx).is_pending() {
                self.armed = true;
                return Poll::Pending;
            }
        }
    }
}

/// The client's socket, telling `clock` when bytes come.
pub(crate) struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, clock: Arc<Clock>) -> Watched<S> {
        Watched { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_waits_for_a_head_answers_then_idles() {
        let clock = Clock::new();
        let start = clock.since.load(Ordering::Relaxed);
        assert_eq!(
            clock.deadline(10, 75),
            Some(start + 10),
            "a new connection: its head"
        );
        let busy = clock.busy();
        assert_eq!(clock.deadline(10, 75), None, "never while it answers");
        clock.read();
        assert_eq!(clock.deadline(10, 75), None, "a request body is not a head");
        drop(busy);
        let idle = clock.since.load(Ordering::Relaxed);
        assert_eq!(clock.deadline(10, 75), Some(idle + 75), "kept alive: idle");
        clock.read();
        let head = clock.since.load(Ordering::Relaxed);
        assert_eq!(
            clock.deadline(10, 75),
            Some(head + 10),
            "a byte: the head's time"
        );
        clock.read();
        assert_eq!(
            clock.since.load(Ordering::Relaxed),
            head,
            "more bytes of a head do not give it more time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn it_expires_after_the_timeout_not_before() {
        let clock = Clock::new();
        let began = Instant::now();
        let mut expiry = Expiry::new(clock, Duration::from_secs(10), Duration::from_secs(75));
        std::future::poll_fn(|cx| expiry.poll_expired(cx)).await;
        let waited = began.elapsed();
        assert!(waited >= Duration::from_millis(9_990), "{waited:?}");
        assert!(waited < Duration::from_secs(11), "{waited:?}");
    }
}
