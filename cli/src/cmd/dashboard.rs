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
use crate::state;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl dashboard                    every declared env, at http://127.0.0.1:7080/
  deployctl dashboard --env prod --open  one env, opened in a browser
  deployctl dashboard --listen 127.0.0.1:0   any free port (the URL is printed)

It runs until interrupted (Ctrl-C). Each agent's own page is at http://AGENT:7071/.")]
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

struct Ctx {
    project: Project,
    targets: Vec<Target>,
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
    let url = format!("http://{}/", listener.local_addr()?);
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
    let path = req.uri().path().to_string();
    match path.as_str() {
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

/// `<`, `>`, `&` and quotes as entities: every value may be user input.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn cell_html(c: &Value) -> String {
    if c.is_null() {
        return "<td class=\"absent\">—</td>".into();
    }
    let s = |k: &str| escape(c[k].as_str().unwrap_or(""));
    let commit: String = s("commit").chars().take(10).collect();
    format!(
        "<td><span class=\"badge {st}\">{st}</span> {rel} ({r} {commit}){msg}</td>",
        st = s("state"),
        rel = c["release"],
        r = s("ref"),
        msg = if c["message"].as_str().unwrap_or("").is_empty() {
            String::new()
        } else {
            format!("<div class=\"msg\">{}</div>", s("message"))
        }
    )
}

fn fleet_page(data: &Value) -> String {
    let agents = data["agents"].as_array().cloned().unwrap_or_default();
    let head: String = agents
        .iter()
        .map(|a| {
            let down = if a["answers"] == true {
                String::new()
            } else {
                format!(
                    "<div class=\"msg\">not answering: {}</div>",
                    escape(a["error"].as_str().unwrap_or(""))
                )
            };
            format!(
                "<th>{} <small>{}</small>{down}</th>",
                escape(a["agent"].as_str().unwrap_or("")),
                escape(a["env"].as_str().unwrap_or(""))
            )
        })
        .collect();
    let mut rows = String::new();
    for d in data["deployments"].as_array().into_iter().flatten() {
        let name = escape(d["name"].as_str().unwrap_or(""));
        rows.push_str(&format!(
            "<tr><td><a href=\"/deployment/{name}\">{name}</a></td>"
        ));
        for c in d["agents"].as_array().into_iter().flatten() {
            rows.push_str(&cell_html(c));
        }
        rows.push_str("</tr>");
    }
    if rows.is_empty() {
        rows = "<tr><td>No deployments.</td></tr>".into();
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>deployctl dashboard</title>\
<style>{STYLE}</style></head><body><h1>deployctl dashboard</h1>\
<div id=\"fleet\"><table><thead><tr><th>Deployment</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>\
<p class=\"note\">Refreshes every 3 s. Data: <a href=\"/data.json\">/data.json</a></p>\
<script>{SCRIPT}</script></body></html>\n"
    )
}

/// A deployment's history (from the state) and the tail of its logs on every agent.
async fn deployment_page(ctx: &Ctx, name: &str) -> String {
    let st = match state::open(&ctx.project) {
        Ok(store) => store.load().await.ok(),
        Err(_) => None,
    };
    let mut history = String::new();
    if let Some(entry) = st.as_ref().and_then(|s| s.deployments.get(name)) {
        for h in entry.history.iter().rev() {
            history.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                h.number,
                escape(&super::history::time_text(h.time)),
                escape(&h.git_ref),
                escape(crate::output::short_commit(&h.commit)),
                escape(&h.packages_hash),
                escape(&h.result),
                escape(&h.note)
            ));
        }
    }
    if history.is_empty() {
        history = "<tr><td colspan=\"7\">Not in the state.</td></tr>".into();
    }
    let mut logs = String::new();
    for target in &ctx.targets {
        let req = pb::LogsRequest {
            name: name.to_string(),
            lines: 40,
            ..Default::default()
        };
        let replies = client::for_each_agent(target, Limit::Answer, move |mut c: Call| {
            let req = req.clone();
            async move {
                let mut stream = c.client.logs(req).await?.into_inner();
                let mut text = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    text.extend_from_slice(&chunk.data);
                }
                Ok(String::from_utf8_lossy(&text).into_owned())
            }
        });
        for r in replies.all().await {
            let body = match r.result {
                Ok(t) => t,
                Err(e) => format!("({})", e.message),
            };
            logs.push_str(&format!(
                "<h3>{}</h3><pre class=\"log\">{}</pre>",
                escape(&r.address),
                escape(&body)
            ));
        }
    }
    let name = escape(name);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name}: deployctl dashboard</title>\
<style>{STYLE}</style></head><body><p><a href=\"/\">← all deployments</a></p><h1>{name}</h1>\
<h2>History</h2><table><thead><tr><th>#</th><th>Time (UTC)</th><th>Ref</th><th>Commit</th><th>Packages</th><th>Result</th><th>Change</th></tr></thead>\
<tbody>{history}</tbody></table><h2>Logs</h2>{logs}</body></html>\n"
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse}th,td{padding:.35em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.badge{padding:.1em .5em;border-radius:.8em;color:#fff;background:#888}\
.badge.healthy{background:#2e7d32}.badge.unhealthy,.badge.failed{background:#c62828}\
.badge.deploying,.badge.pending{background:#ef6c00}.badge.stopped{background:#616161}\
.absent{color:#aaa}.msg{color:#777;font-size:12px;max-width:28em}small,.note{color:#777}\
pre.log{background:#f7f7f7;padding:.6em;overflow-x:auto;max-height:30em}";

/// Replaces the table with a fresh one from /data.json, built from text nodes.
const SCRIPT: &str = r#"
(function(){
  function el(tag, text, cls) { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; }
  function render(data) {
    const table = el('table'), head = el('tr');
    head.appendChild(el('th', 'Deployment'));
    for (const a of data.agents) {
      const th = el('th', a.agent + ' '); th.appendChild(el('small', a.env));
      if (!a.answers) th.appendChild(el('div', 'not answering: ' + a.error, 'msg'));
      head.appendChild(th);
    }
    const thead = el('thead'); thead.appendChild(head); table.appendChild(thead);
    const body = el('tbody');
    for (const d of data.deployments) {
      const tr = el('tr'), td = el('td'), link = el('a', d.name);
      link.href = '/deployment/' + encodeURIComponent(d.name); td.appendChild(link); tr.appendChild(td);
      for (const c of d.agents) {
        if (!c) { tr.appendChild(el('td', '—', 'absent')); continue; }
        const cell = el('td');
        cell.appendChild(el('span', c.state, 'badge ' + c.state));
        cell.appendChild(document.createTextNode(' ' + c.release + ' (' + c.ref + ' ' + (c.commit || '').slice(0, 10) + ')'));
        if (c.message) cell.appendChild(el('div', c.message, 'msg'));
        tr.appendChild(cell);
      }
      body.appendChild(tr);
    }
    table.appendChild(body);
    const fleet = document.getElementById('fleet'); fleet.textContent = ''; fleet.appendChild(table);
    document.body.dataset.refreshed = String(Date.now());
  }
  function refresh() { fetch('/data.json').then(r => r.json()).then(render).catch(() => {}); }
  refresh();
  setInterval(refresh, 3000);
})();
"#;

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_escape_what_agents_say() {
        let c = json!({"state": "failed", "release": 1, "ref": "<b>", "commit": "abc",
                       "message": "<script>x()</script>"});
        let html = cell_html(&c);
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert_eq!(cell_html(&Value::Null), "<td class=\"absent\">—</td>");
    }
}
