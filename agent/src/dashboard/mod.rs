//! The node's page for people (`GET /` on the HTTP port) and its data
//! (`GET /dashboard.json`): every deployment with its state, release, ref and commit,
//! uptime, restarts and why it last restarted, CPU and memory, its URL, and the node
//! proxy's request rate, latencies and 5xx rate. The page is a table rendered here (readable
//! without JavaScript); a small embedded script refreshes it from the JSON every 2 s.
//! Nothing is loaded from elsewhere.
//!
//! With authentication on, the page and its JSON show only what the health endpoints
//! already tell anyone (names and states) until a token is given (`Authorization: Bearer`,
//! or the page's form, kept in the browser session); then the caller's own deployments
//! (its user's and groups'; an admin's: all) in full. Every value is escaped.

use serde_json::{json, Value};

use crate::supervisor::{Supervisor, View};

mod assets;
mod detail;
mod text;

use assets::{LOGIN, OOM_BADGE, SCRIPT, STYLE};
pub(crate) use detail::{detail, detail_page};

/// The data of the page, for the caller that `token` names (none: anonymous).
pub(crate) fn data(sup: &Supervisor, token: Option<&str>) -> Value {
    let caller = sup.auth().authenticate(token).ok();
    let views = sup.status(None).unwrap_or_default();
    let deployments: Vec<Value> = views
        .iter()
        .map(|v| {
            let owner = v.spec.as_ref().map(|s| s.owner.as_str()).unwrap_or("");
            let full = caller.as_ref().is_some_and(|c| {
                if owner.is_empty() {
                    c.admin
                } else {
                    c.may(owner)
                }
            });
            if full {
                let mut r = row(v);
                r["last_deploy"] = last_deploy(sup, &v.name);
                r["traffic_minutes"] = minutes(sup, v);
                r
            } else {
                json!({"name": v.name, "state": v.state.as_str(), "limited": true})
            }
        })
        .collect();
    json!({
        "agent": env!("CARGO_PKG_VERSION"),
        "authenticated": caller.is_some(),
        "deployments": deployments,
    })
}

/// The node proxy's traffic for `v` minute by minute, over the last 15 minutes.
fn minutes(sup: &Supervisor, v: &View) -> Value {
    let Some(port) = v.spec.as_ref().map(|s| s.port) else {
        return json!([]);
    };
    let listen = std::net::SocketAddr::new(sup.config().app_host, port);
    let m: Vec<Value> = sup
        .traffic()
        .per_minute(listen)
        .into_iter()
        .map(|m| {
            json!({"minutes_ago": m.minutes_ago, "requests_per_second": m.requests_per_second,
                   "p99_ms": m.p99.map(|s| s * 1000.0), "error_rate": m.error_rate})
        })
        .collect();
    json!(m)
}

/// A small chart of requests per second over the last 15 minutes (inline SVG).
fn sparkline(minutes: &Value) -> String {
    let points: Vec<(f64, f64)> = minutes
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                15.0 - m["minutes_ago"].as_f64().unwrap_or(0.0),
                m["requests_per_second"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    if points.len() < 2 {
        return String::new();
    }
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
    let coords: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", x * 8.0, 22.0 - y / max * 20.0))
        .collect();
    format!(
        "<svg class=\"spark\" width=\"120\" height=\"24\" viewBox=\"0 0 120 24\"><title>requests/s, last 15 minutes (max {max:.1})</title><polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        coords.join(" ")
    )
}

/// The steps of `name`'s last deploy (or restart) with their durations, if recorded.
fn last_deploy(sup: &Supervisor, name: &str) -> Value {
    let path = crate::pipeline::events::summary_path(&sup.layout().deploy_log(name));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn row(v: &View) -> Value {
    let traffic = v.traffic.as_ref().map(|t| {
        json!({
            "requests_per_second": t.requests_per_second,
            "p50_ms": t.p50.map(|s| s * 1000.0),
            "p99_ms": t.p99.map(|s| s * 1000.0),
            "error_rate": t.error_rate,
        })
    });
    json!({
        "name": v.name,
        "state": v.state.as_str(),
        "message": v.message,
        "release": v.release,
        "ref": v.git_ref,
        "commit": v.commit,
        "uptime_s": v.uptime.as_secs(),
        "restarts": v.restarts,
        "last_exit_code": v.last_exit_code,
        "cpu_percent": v.cpu_percent,
        "memory_bytes": v.memory_bytes,
        "memory_limit_bytes": v.kernel.memory_limit,
        "oom_kills": v.kernel.oom_kills,
        // The last exit of an instance was an OOM kill at its memory limit.
        "oom_killed": v.kernel.oom_killed,
        "url": v.url,
        "last_health": v.last_health,
        "traffic": traffic,
        "last_event": v.last_event.as_ref().map(|e| e.text.as_str()),
        "last_event_at": v.last_event.as_ref().map(|e| e.at),
        "adopted_at": v.adopted_at,
        // The last deploy failed while the current release kept serving.
        "failed_deploy": v.failed_deploy.as_ref().map(|f| json!({
            "release": f.release, "step": f.step, "reason": f.reason, "at": f.at})),
    })
}

/// `<`, `>`, `&`, quotes as entities: any value may be user input.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The cells of one deployment's row, as text (the script renders the same).
fn cells(d: &Value, now: i64) -> Vec<String> {
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    if d["limited"] == true {
        let mut c = vec![s("name"), s("state")];
        c.extend(std::iter::repeat_n(String::new(), 9));
        return c;
    }
    let commit: String = s("commit").chars().take(10).collect();
    let uptime = humantime::format_duration(std::time::Duration::from_secs(
        d["uptime_s"].as_u64().unwrap_or(0),
    ))
    .to_string();
    let traffic = match d["traffic"].as_object() {
        Some(t) => format!(
            "{:.1}/s p50 {} p99 {} 5xx {:.1}%",
            t.get("requests_per_second")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            ms(t.get("p50_ms")),
            ms(t.get("p99_ms")),
            t.get("error_rate").and_then(Value::as_f64).unwrap_or(0.0) * 100.0
        ),
        None => "-".into(),
    };
    vec![
        s("name"),
        s("state"),
        format!("{} ({} {commit})", d["release"], s("ref")),
        uptime,
        d["restarts"].to_string(),
        format!("{:.1}%", d["cpu_percent"].as_f64().unwrap_or(0.0)),
        format!(
            "{} MiB",
            d["memory_bytes"].as_u64().unwrap_or(0) / (1024 * 1024)
        ),
        traffic,
        text::last_event(d, now).0,
        text::last_deploy(&d["last_deploy"]).0,
        s("url"),
    ]
}

fn ms(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64)
        .map(|x| format!("{x:.1}ms"))
        .unwrap_or_else(|| "-".into())
}

const HEADERS: [&str; 11] = [
    "Deployment",
    "State",
    "Release",
    "Uptime",
    "Restarts",
    "CPU",
    "Memory",
    "Traffic (1 min)",
    "Last event",
    "Last deploy",
    "URL",
];

/// The page: the table as it is now, and the script that keeps it so.
pub(crate) fn page(sup: &Supervisor, token: Option<&str>) -> String {
    let d = data(sup, token);
    let mut rows = String::new();
    for dep in d["deployments"].as_array().into_iter().flatten() {
        rows.push_str(&row_html(dep));
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"11\">No deployments on this node.</td></tr>".into();
    }
    let head: String = HEADERS
        .iter()
        .map(|h| format!("<th>{}</th>", escape(h)))
        .collect();
    let login = if d["authenticated"] == true {
        ""
    } else {
        LOGIN
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>deploy-agent</title><style>{STYLE}</style></head><body>\
<h1>deploy-agent <small>{}</small></h1>{login}\
<table id=\"deployments\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>\
<p class=\"note\">Refreshes every 2 s. Data: <a href=\"/dashboard.json\">/dashboard.json</a></p>\
<script>{SCRIPT}</script></body></html>\n",
        escape(d["agent"].as_str().unwrap_or(""))
    )
}

fn row_html(dep: &Value) -> String {
    let c = cells(dep, crate::clock::now_unix());
    let state = escape(&c[1]);
    let mut tr = format!("<tr class=\"state-{state}\">");
    for (i, cell) in c.iter().enumerate() {
        let text = escape(cell);
        let td = match i {
            0 if dep["limited"] != true => {
                format!("<td><a href=\"/deployments/{text}\">{text}</a></td>")
            }
            1 => format!(
                "<td><span class=\"badge {state}\">{text}</span>{}{}</td>",
                if dep["oom_killed"] == true {
                    OOM_BADGE
                } else {
                    ""
                },
                // Why the state is what it is, when that needs saying.
                match dep["message"].as_str().filter(|m| !m.is_empty()) {
                    Some(m) => format!("<br><small class=\"why\">{}</small>", escape(m)),
                    None => String::new(),
                }
            ),
            8 => format!(
                "<td title=\"{}\">{text}</td>",
                escape(&text::last_event(dep, crate::clock::now_unix()).1)
            ),
            9 => format!(
                "<td title=\"{}\">{text}</td>",
                escape(&text::last_deploy(&dep["last_deploy"]).1)
            ),
            7 => format!("<td>{text}{}</td>", sparkline(&dep["traffic_minutes"])),
            10 if cell.starts_with("http://") || cell.starts_with("https://") => {
                format!("<td><a href=\"{text}\">{text}</a></td>")
            }
            _ => format!("<td>{text}</td>"),
        };
        tr.push_str(&td);
    }
    tr.push_str("</tr>");
    tr
}

/// A page with its inline script and style allowed by a nonce of this response, and the
/// `Content-Security-Policy` that allows nothing else: no other script, no frame around it,
/// no request but to this agent. (`None`: no random bytes; the page is served without.)
pub(crate) fn locked_down(page: String) -> (String, Option<String>) {
    let Ok(token) = crate::auth::new_token() else {
        return (page, None);
    };
    let nonce: String = token
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    let page = page
        .replace("<script>", &format!("<script nonce=\"{nonce}\">"))
        .replace("<style>", &format!("<style nonce=\"{nonce}\">"));
    let policy = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    );
    (page, Some(policy))
}

#[cfg(test)]
mod tests;
