//! The bodies the proxy sends: a request's on its way to the app and a response's on its way
//! to the client, passed on frame by frame as they come (never buffered) and counted; or one
//! the proxy writes itself (a 502, a 503). One type without boxes: a request costs no
//! allocation for its bodies.
//!
//! A response body also holds what must last until the response has been sent: its request
//! in flight on the backend ([`InFlight`]: a release drains until its app answered, and a
//! stream of server-sent events is in flight for as long as it runs), and the connection's
//! [`Busy`] mark (no timeout closes a connection while it answers).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

use super::http::Ctx;
use super::table::InFlight;
use super::timeouts::Busy;

pub(crate) struct ProxyBody {
    kind: Kind,
    _busy: Option<Busy>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    /// A request's body, counted on its route (its backend is not known yet).
    ToApp(Incoming, Arc<Ctx>),
    /// A response's body, counted on its backend.
    FromApp(Incoming, InFlight),
}

impl ProxyBody {
    pub(crate) fn empty() -> ProxyBody {
        ProxyBody {
            kind: Kind::Empty,
            _busy: None,
        }
    }

    pub(crate) fn full(bytes: Bytes, busy: Option<Busy>) -> ProxyBody {
        ProxyBody {
            kind: Kind::Full(Some(bytes)),
            _busy: busy,
        }
    }

    pub(crate) fn to_app(body: Incoming, ctx: Arc<Ctx>) -> ProxyBody {
        ProxyBody {
            kind: Kind::ToApp(body, ctx),
            _busy: None,
        }
    }

    pub(crate) fn from_app(body: Incoming, in_flight: InFlight, busy: Option<Busy>) -> ProxyBody {
        ProxyBody {
            kind: Kind::FromApp(body, in_flight),
            _busy: busy,
        }
    }

    /// An empty body that holds `busy` (the answer to an upgrade).
    pub(crate) fn holding(busy: Option<Busy>) -> ProxyBody {
        ProxyBody {
            kind: Kind::Empty,
            _busy: busy,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::ToApp(body, ctx) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        ctx.route.bytes_to_app(data.len() as u64);
                    }
                }
                polled
            }
            Kind::FromApp(body, in_flight) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(frame))) = &polled {
                    if let Some(data) = frame.data_ref() {
                        in_flight.backend().bytes(0, data.len() as u64);
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::ToApp(body, _) | Kind::FromApp(body, _) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::ToApp(body, _) | Kind::FromApp(body, _) => body.size_hint(),
        }
    }
}
