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
                async move { Ok::<_, Infallible>(route(sup, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Every endpoint of the HTTP port. Long on purpose: one arm per path, as the README's table
/// lists them.
async fn route(sup: Arc<Supervisor>, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
        .map(|t| t.trim().to_string());
    match path {
        // The pages read small files (records, summaries): on a blocking thread.
        "/" | "/dashboard.json" => {
            let (s, html) = (sup.clone(), path == "/");
            let body = tokio::task::spawn_blocking(move || {
                if html {
                    crate::dashboard::page(&s, token.as_deref())
                } else {
                    format!("{}\n", crate::dashboard::data(&s, token.as_deref()))
                }
            })
            .await
            .unwrap_or_default();
            let kind = if html {
                "text/html; charset=utf-8"
            } else {
                "application/json"
            };
            reply(StatusCode::OK, kind, body)
        }
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
        _ => {
            let Some(rest) = path.strip_prefix("/deployments/") else {
                return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
            };
            if let Some(name) = rest.strip_suffix("/health") {
                return deployment_health(&sup, name);
            }
            let (name, json) = match rest.strip_suffix("/detail.json") {
                Some(n) => (n, true),
                None => (rest, false),
            };
            if crate::spec::validate_name(name).is_err() {
                return reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
            }
            let detail = crate::dashboard::detail(&sup, name, token.as_deref()).await;
            match (json, detail) {
                (true, Some(d)) => reply(StatusCode::OK, "application/json", format!("{d}\n")),
                (true, None) => reply(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    "{\"error\":\"not found (or a token that may see it is needed)\"}\n".into(),
                ),
                (false, d) => reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    crate::dashboard::detail_page(name, d.as_ref()),
                ),
            }
        }
    }
}

fn deployment_health(sup: &Supervisor, name: &str) -> Response<Full<Bytes>> {
    match sup.healthy(name) {
        Some(h) => {
            let mut body = serde_json::json!({
                "name": name, "healthy": h.healthy, "state": h.state, "last_check": h.last_check,
            });
            if h.instances > 1 {
                body["instances"] = h.instances.into();
                body["unhealthy"] = serde_json::to_value(&h.unhealthy).unwrap_or_default();
            }
            let code = if h.healthy {
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
    let html = content_type.starts_with("text/html");
    let (body, policy) = match html {
        true => crate::dashboard::locked_down(body),
        false => (body, None),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    let headers = resp.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        headers.insert(hyper::header::CONTENT_TYPE, v);
    }
    if let Some(policy) = policy.and_then(|p| hyper::header::HeaderValue::from_str(&p).ok()) {
        headers.insert(hyper::header::CONTENT_SECURITY_POLICY, policy);
    }
    if html {
        // The page holds a token form: never inside another site's frame.
        headers.insert(
            hyper::header::X_FRAME_OPTIONS,
            hyper::header::HeaderValue::from_static("DENY"),
        );
        headers.insert(
            hyper::header::X_CONTENT_TYPE_OPTIONS,
            hyper::header::HeaderValue::from_static("nosniff"),
        );
    }
    resp
}
