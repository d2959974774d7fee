//! Plain HTTP for load balancers and monitoring, answered from the supervisor's cached
//! state (never by probing an app inline): `/healthz` (the agent is alive), `/readyz` (it
//! has taken over every deployment from its store), `/deployments/NAME/health`, `/metrics`;
//! and for people, `/` (the node's deployments, see [`crate::dashboard`]) and its data
//! `/dashboard.json`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::exposition::{self, Format};
use crate::supervisor::Supervisor;

pub(crate) async fn serve(
    listener: TcpListener,
    sup: Arc<Supervisor>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    continue;
                }
            },
        };
        let sup = sup.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let sup = sup.clone();
                async move { Ok::<_, Infallible>(route(&sup, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn route(sup: &Supervisor, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    let path = req.uri().path();
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match path {
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::dashboard::page(sup, token),
        ),
        "/dashboard.json" => reply(
            StatusCode::OK,
            "application/json",
            format!("{}\n", crate::dashboard::data(sup, token)),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if sup.is_ready() => reply(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: taking over the deployments from the store\n".into(),
        ),
        "/metrics" => {
            let accept = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let openmetrics = sup.metrics().encode(&sup.present(), sup.served());
            let body = match format {
                Format::OpenMetrics => openmetrics,
                Format::Text004 => exposition::to_text_004(&openmetrics),
            };
            reply(StatusCode::OK, format.content_type(), body)
        }
        _ => match path
            .strip_prefix("/deployments/")
            .and_then(|rest| rest.strip_suffix("/health"))
        {
            Some(name) => deployment_health(sup, name),
            None => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        },
    }
}

fn deployment_health(sup: &Supervisor, name: &str) -> Response<Full<Bytes>> {
    match sup.healthy(name) {
        Some((healthy, state, last)) => {
            let body = serde_json::json!({
                "name": name, "healthy": healthy, "state": state, "last_check": last,
            });
            let code = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, "application/json", format!("{body}\n"))
        }
        None => {
            let body = serde_json::json!({"name": name, "healthy": false, "state": "not found"});
            reply(
                StatusCode::NOT_FOUND,
                "application/json",
                format!("{body}\n"),
            )
        }
    }
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}
