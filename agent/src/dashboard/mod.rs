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

mod detail;

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

/// "ok in 1.2 s: resolve 5 ms, fetch 12 ms, ..." for the page.
fn last_deploy_text(d: &Value) -> String {
    let Some(steps) = d["steps"].as_array() else {
        return String::new();
    };
    let parts: Vec<String> = steps
        .iter()
        .filter(|s| s["result"] != "skipped")
        .map(|s| {
            let mark = if s["result"] == "failed" { " ✗" } else { "" };
            format!(
                "{} {}{mark}",
                s["step"].as_str().unwrap_or(""),
                ms_text(s["ms"].as_u64().unwrap_or(0))
            )
        })
        .collect();
    format!(
        "{} in {}: {}",
        if d["ok"] == true { "ok" } else { "failed" },
        ms_text(d["total_ms"].as_u64().unwrap_or(0)),
        parts.join(", ")
    )
}

fn ms_text(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
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
fn cells(d: &Value) -> Vec<String> {
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
        s("message"),
        last_deploy_text(&d["last_deploy"]),
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
    let c = cells(dep);
    let state = escape(&c[1]);
    let mut tr = format!("<tr class=\"state-{state}\">");
    for (i, cell) in c.iter().enumerate() {
        let text = escape(cell);
        let td = match i {
            0 if dep["limited"] != true => {
                format!("<td><a href=\"/deployments/{text}\">{text}</a></td>")
            }
            1 => format!(
                "<td><span class=\"badge {state}\">{text}</span>{}</td>",
                if dep["oom_killed"] == true {
                    OOM_BADGE
                } else {
                    ""
                }
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

/// Next to the state when an instance's last exit was an OOM kill.
const OOM_BADGE: &str = " <span class=\"badge failed oom\">out of memory</span>";

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.badge{padding:.1em .5em;border-radius:.8em;color:#fff;background:#888}\
.badge.healthy{background:#2e7d32}.badge.unhealthy,.badge.failed{background:#c62828}\
.badge.deploying,.badge.pending,.badge.restarting{background:#ef6c00}.badge.stopped{background:#616161}\
small,.note{color:#777}form{margin:.5em 0 1em}svg.spark{display:block;margin-top:.2em}";

const LOGIN: &str =
    "<form id=\"login\">This agent requires a token to show more than names and states: \
<input id=\"token\" type=\"password\" placeholder=\"token\" autocomplete=\"off\"> \
<button>Show</button></form>";

/// Fetches the JSON (with the session's token) and renders the rows as text nodes: the
/// browser escapes them.
const SCRIPT: &str = r#"
(function(){
  const headers = () => { const t = sessionStorage.getItem('deploy-agent-token'); return t ? {Authorization: 'Bearer ' + t} : {}; };
  const form = document.getElementById('login');
  if (form) form.addEventListener('submit', e => { e.preventDefault(); sessionStorage.setItem('deploy-agent-token', document.getElementById('token').value); refresh(); });
  const dur = s => { const d = Math.floor(s/86400), h = Math.floor(s%86400/3600), m = Math.floor(s%3600/60); return (d? d+'d ' : '') + (h? h+'h ' : '') + (m? m+'m ' : '') + (s%60) + 's'; };
  const ms = v => v == null ? '-' : v.toFixed(1) + 'ms';
  function cells(d) {
    if (d.limited) return [d.name, d.state, '', '', '', '', '', '', '', '', ''];
    const t = d.traffic;
    return [d.name, d.state, d.release + ' (' + d.ref + ' ' + (d.commit || '').slice(0, 10) + ')', dur(d.uptime_s), String(d.restarts),
      d.cpu_percent.toFixed(1) + '%', Math.floor(d.memory_bytes / 1048576) + ' MiB',
      t ? t.requests_per_second.toFixed(1) + '/s p50 ' + ms(t.p50_ms) + ' p99 ' + ms(t.p99_ms) + ' 5xx ' + (t.error_rate * 100).toFixed(1) + '%' : '-',
      d.message || '', lastDeploy(d.last_deploy), d.url || ''];
  }
  const msText = v => v >= 1000 ? (v / 1000).toFixed(1) + ' s' : v + ' ms';
  function lastDeploy(l) {
    if (!l || !l.steps) return '';
    const parts = l.steps.filter(s => s.result !== 'skipped').map(s => s.step + ' ' + msText(s.ms) + (s.result === 'failed' ? ' ✗' : ''));
    return (l.ok ? 'ok' : 'failed') + ' in ' + msText(l.total_ms) + ': ' + parts.join(', ');
  }
  function spark(td, minutes) {
    if (!minutes || minutes.length < 2) return;
    const ns = 'http://www.w3.org/2000/svg', svg = document.createElementNS(ns, 'svg'), line = document.createElementNS(ns, 'polyline');
    const max = Math.max(1e-9, ...minutes.map(m => m.requests_per_second));
    svg.setAttribute('class', 'spark'); svg.setAttribute('width', '120'); svg.setAttribute('height', '24'); svg.setAttribute('viewBox', '0 0 120 24');
    line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#1565c0'); line.setAttribute('stroke-width', '1.5');
    line.setAttribute('points', minutes.map(m => ((15 - m.minutes_ago) * 8).toFixed(1) + ',' + (22 - m.requests_per_second / max * 20).toFixed(1)).join(' '));
    svg.appendChild(line); td.appendChild(svg);
  }
  function render(data) {
    const body = document.querySelector('#deployments tbody');
    body.textContent = '';
    for (const d of data.deployments) {
      const tr = document.createElement('tr');
      tr.className = 'state-' + d.state;
      cells(d).forEach((c, i) => {
        const td = document.createElement('td');
        if (i === 0 && !d.limited) { const a = document.createElement('a'); a.href = '/deployments/' + encodeURIComponent(c); a.textContent = c; td.appendChild(a); }
        else if (i === 1) { const b = document.createElement('span'); b.className = 'badge ' + d.state; b.textContent = c; td.appendChild(b); if (d.oom_killed) { const o = document.createElement('span'); o.className = 'badge failed oom'; o.textContent = 'out of memory'; td.append(' ', o); } }
        else if (i === 10 && /^https?:\/\//.test(c)) { const a = document.createElement('a'); a.href = c; a.textContent = c; td.appendChild(a); }
        else if (i === 7) { td.textContent = c; spark(td, d.traffic_minutes); }
        else td.textContent = c;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    if (!data.deployments.length) { const tr = document.createElement('tr'); const td = document.createElement('td'); td.colSpan = 11; td.textContent = 'No deployments on this node.'; tr.appendChild(td); body.appendChild(tr); }
    document.body.dataset.refreshed = String(Date.now());
  }
  function refresh() { fetch('/dashboard.json', {headers: headers()}).then(r => r.json()).then(render).catch(() => {}); }
  refresh();
  setInterval(refresh, 2000);
})();
"#;

#[cfg(test)]
mod tests;
