//! Who is calling: the bearer token of every request becomes a [`Caller`]; a refused token
//! is logged (rate-limited) with the peer address and the method.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::{Caller, Refused};
use crate::refusals::{RefusalLog, RpcMethod};
use crate::supervisor::Supervisor;

/// The interceptor that turns the bearer token into a [`Caller`] on every request.
pub(crate) fn authenticator(
    sup: Arc<Supervisor>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    let refusals = Arc::new(RefusalLog::default());
    move |mut req: Request<()>| {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let refused = match sup.auth().authenticate(token.as_deref()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                return Ok(req);
            }
            Err(r) => r,
        };
        let method = req
            .extensions()
            .get::<RpcMethod>()
            .map_or("unknown", |m| m.0.as_str());
        let (user, why) = match &refused {
            Refused::NoToken => (None, "no token"),
            Refused::BadToken => (None, "unknown token"),
            Refused::Expired(user) => (Some(user.as_str()), "expired token"),
        };
        refusals.refused(req.remote_addr(), method, user, why);
        // The same answer for a wrong, expired or removed token.
        Err(match refused {
            Refused::NoToken => Status::unauthenticated("this agent requires a token"),
            Refused::BadToken | Refused::Expired(_) => {
                Status::unauthenticated("the token was refused")
            }
        })
    }
}

/// The caller the interceptor found, and the request's message.
pub(super) fn caller<T>(req: Request<T>) -> Result<(Caller, T), Status> {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no caller"))?;
    Ok((caller, req.into_inner()))
}
