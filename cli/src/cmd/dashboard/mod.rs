//! `dashboard [--env ENV] [--open]`: a web page on 127.0.0.1 with every deployment of the
//! env(s) — one row per deployment, one cell per agent, so a half-deployed fleet shows at
//! once — refreshed every 3 s; a deployment's page has its history (from the state) and the
//! tail of its logs from each agent. It asks the agents with the env's token and TLS, like
//! every other command, and listens on loopback only. Nothing is loaded from elsewhere;
//! every value is escaped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use deployctl_proto::v1 as pb;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::client::{self, Call, Limit, Target};
use crate::error::bad_input;
use crate::project::Project;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl dashboard                    every declared env, at http://127.0.0.1:7080/?token=...
  deployctl dashboard --env prod --open  one env, opened in a browser
  deployctl dashboard --listen 127.0.0.1:0   any free port (the URL is printed)

It runs until interrupted (Ctrl-C). Open the URL it prints: it carries a secret made for this run,
and any request without it, or to another Host than this address, is refused (403).
Each agent's own page is at http://AGENT:7071/.")]
pub(crate) struct Args {
    /// Only this env's agents [default: every declared env, and the default one]
    #[arg(long)]
    pub env: Option<String>,
    /// Open the page in a browser (xdg-open)
    #[arg(long)]
    pub open: bool,
    /// Where to serve the page: a loopback address only
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7080")]
    pub listen: SocketAddr,
}

mod access;
mod pages;

use pages::{deployment_page, fleet_page};

struct Ctx {
    project: Project,
    targets: Vec<Target>,
    access: access::Access,
}

pub(crate) async fn run(project: &Project, args: Args) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        return Err(bad_input(format!(
            "--listen: {} is not a loopback address; the dashboard shows what your token may see, so it listens on 127.0.0.1 (or ::1) only",
            args.listen
        )));
    }
    let envs = match &args.env {
        Some(e) => vec![e.clone()],
        None => super::nodes::declared_envs(project),
    };
    let mut targets = Vec::new();
    for env in &envs {
        targets.push(client::resolve_env(project, env)?.no_autostart());
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}; pick another with --listen",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let access = access::Access::new(addr)?;
    let url = access.url(addr);
    println!(
        "Dashboard of env {} at {url} (Ctrl-C to stop)",
        envs.join(", ")
    );
    if args.open {
        if let Err(e) = std::process::Command::new("xdg-open").arg(&url).spawn() {
            eprintln!("cannot open a browser ({e}); open {url} yourself");
        }
    }
    let ctx = Arc::new(Ctx {
        project: project.clone(),
        targets,
        access,
    });
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&ctx, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let first_visit = match ctx.access.check(&req) {
        Ok(first) => first,
        Err((code, why)) => return reply(code, "text/plain; charset=utf-8", why),
    };
    let mut resp = page(ctx, req.uri().path()).await;
    if first_visit {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&ctx.access.cookie()) {
            resp.headers_mut().insert(hyper::header::SET_COOKIE, v);
        }
    }
    resp
}

async fn page(ctx: &Ctx, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/" => {
            let data = fleet(ctx).await;
            reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                fleet_page(&data),
            )
        }
        "/data.json" => {
            let data = fleet(ctx).await;
            reply(StatusCode::OK, "application/json", data.to_string())
        }
        _ => match path.strip_prefix("/deployment/") {
            Some(name) if crate::decl::validate_name("NAME", name).is_ok() => {
                let page = deployment_page(ctx, name).await;
                reply(StatusCode::OK, "text/html; charset=utf-8", page)
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        },
    }
}

/// Every deployment of the envs, one cell per agent (an agent in several envs once).
async fn fleet(ctx: &Ctx) -> Value {
    let mut columns: Vec<(Vec<String>, String)> = Vec::new();
    let mut fanout = client::Fanout::default();
    for target in &ctx.targets {
        for address in &target.addresses {
            match columns.iter_mut().find(|(_, a)| a == address) {
                Some((envs, _)) => envs.push(target.env.clone()),
                None => {
                    columns.push((vec![target.env.clone()], address.clone()));
                    fanout.add(target, address, Limit::Answer, |mut c: Call| async move {
                        Ok(c.client
                            .status(pb::StatusRequest::default())
                            .await?
                            .into_inner())
                    });
                }
            }
        }
    }
    let mut agents: Vec<Value> = columns
        .iter()
        .map(|(envs, a)| json!({"env": envs.join(", "), "agent": a, "answers": true}))
        .collect();
    let mut rows: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for r in fanout.all().await {
        match r.result {
            Ok(reply) => {
                for d in reply.deployments {
                    let cells = rows
                        .entry(d.name.clone())
                        .or_insert_with(|| vec![Value::Null; columns.len()]);
                    cells[r.index] = json!({"state": d.state, "release": d.release,
                        "ref": d.git_ref, "commit": d.commit, "restarts": d.restarts,
                        "url": d.url, "message": d.message});
                }
            }
            Err(e) => {
                agents[r.index]["answers"] = json!(false);
                agents[r.index]["error"] = json!(e.message);
            }
        }
    }
    let deployments: Vec<Value> = rows
        .into_iter()
        .map(|(name, cells)| json!({"name": name, "agents": cells}))
        .collect();
    json!({"agents": agents, "deployments": deployments})
}

/// A reply; an HTML page runs only its own inline script and style (a nonce per reply) and
/// is never framed.
fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let html = content_type.starts_with("text/html");
    let nonce = access::random_hex(12).ok().filter(|_| html);
    let body = match &nonce {
        Some(n) => body
            .replace("<script>", &format!("<script nonce=\"{n}\">"))
            .replace("<style>", &format!("<style nonce=\"{n}\">")),
        None => body,
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    let headers = resp.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        headers.insert(hyper::header::CONTENT_TYPE, v);
    }
    if let Some(n) = nonce {
        let policy = format!("default-src 'none'; script-src 'nonce-{n}'; style-src 'nonce-{n}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&policy) {
            headers.insert(hyper::header::CONTENT_SECURITY_POLICY, v);
        }
        headers.insert(
            hyper::header::X_FRAME_OPTIONS,
            hyper::header::HeaderValue::from_static("DENY"),
        );
    }
    resp
}
