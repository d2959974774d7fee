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

/// A deployment's history and the tail of its app's output (secrets redacted), when the
/// caller `token` names may see them; `None` otherwise (or when there is no such one).
pub(crate) async fn detail(sup: &Supervisor, name: &str, token: Option<&str>) -> Option<Value> {
    let d = sup.get(name)?;
    let caller = sup.auth().authenticate(token).ok()?;
    let allowed = match d.owner() {
        Some(o) => caller.may(&o),
        None => caller.admin,
    };
    if !allowed {
        return None;
    }
    let record = d.record();
    let history: Vec<Value> = record
        .releases
        .iter()
        .rev()
        .map(|r| {
            json!({"number": r.number, "deployed_at": r.deployed_at, "ref": r.git_ref,
                   "commit": r.commit, "packages_hash": r.packages_hash,
                   "result": r.result.as_str(), "current": record.current == Some(r.number)})
        })
        .collect();
    let redactor = sup.redactor(name).await;
    let log: Vec<String> = crate::logs::last_lines(&sup.layout().app_log(name), 0, LOG_LINES)
        .await
        .into_iter()
        .map(|l| redactor.text(&l))
        .collect();
    Some(json!({"name": name, "history": history, "log": log}))
}

/// How many of the app's last lines a deployment's page shows.
const LOG_LINES: usize = 40;

/// A deployment's page: rendered here when `data` is given, else filled in by the script
/// with the session's token (or saying that a token is needed).
pub(crate) fn detail_page(name: &str, data: Option<&Value>) -> String {
    let name_html = escape(name);
    let (history, log) = match data {
        Some(d) => {
            let rows: String = d["history"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    let s = |k: &str| escape(h[k].as_str().unwrap_or(""));
                    let when = crate::logtimes::format(h["deployed_at"].as_i64().unwrap_or(0) * 1000);
                    let mark = if h["current"] == true { " *" } else { "" };
                    format!(
                        "<tr><td>{}{mark}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        h["number"],
                        escape(&when),
                        s("ref"),
                        s("commit").chars().take(10).collect::<String>(),
                        s("packages_hash"),
                        s("result")
                    )
                })
                .collect();
            let log: Vec<String> = d["log"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| escape(l.as_str().unwrap_or("")))
                .collect();
            (rows, log.join("\n"))
        }
        None => (
            "<tr><td colspan=\"6\">Not shown: give a token on the node's page (this agent requires one), or there is no such deployment.</td></tr>".to_string(),
            String::new(),
        ),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{name_html}: deploy-agent</title>\
<style>{STYLE}pre{{background:#f7f7f7;padding:.6em;overflow-x:auto}}</style></head><body>\
<p><a href=\"/\">← all deployments</a></p><h1>{name_html}</h1><h2>History</h2>\
<table id=\"history\"><thead><tr><th>#</th><th>Deployed</th><th>Ref</th><th>Commit</th><th>Packages</th><th>Result</th></tr></thead>\
<tbody>{history}</tbody></table><h2>Last {LOG_LINES} lines of its output</h2><pre id=\"log\">{log}</pre>\
<script>{DETAIL_SCRIPT}</script></body></html>\n"
    )
}

/// Fills a deployment's page with the session's token when the server could not.
const DETAIL_SCRIPT: &str = r#"
(function(){
  const t = sessionStorage.getItem('deploy-agent-token');
  if (!t || document.getElementById('log').textContent) return;
  fetch(location.pathname + '/detail.json', {headers: {Authorization: 'Bearer ' + t}})
    .then(r => r.ok ? r.json() : null).then(d => {
      if (!d) return;
      const body = document.querySelector('#history tbody'); body.textContent = '';
      for (const h of d.history) {
        const tr = document.createElement('tr');
        [h.number + (h.current ? ' *' : ''), new Date(h.deployed_at * 1000).toISOString(), h.ref, (h.commit || '').slice(0, 10), h.packages_hash, h.result]
          .forEach(c => { const td = document.createElement('td'); td.textContent = c; tr.appendChild(td); });
        body.appendChild(tr);
      }
      document.getElementById('log').textContent = d.log.join('\n');
    }).catch(() => {});
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let row = row_html(&json!({
            "name": "web", "state": "failed", "message": "<script>bad()</script>",
            "release": 1, "ref": "v1", "commit": "abc", "uptime_s": 3, "restarts": 0,
            "cpu_percent": 0.0, "memory_bytes": 0, "url": "javascript:alert(1)"
        }));
        assert!(!row.contains("<script>"), "{row}");
        let chart = sparkline(&json!([
            {"minutes_ago": 2, "requests_per_second": 0.0},
            {"minutes_ago": 1, "requests_per_second": 5.0},
            {"minutes_ago": 0, "requests_per_second": 10.0},
        ]));
        assert!(
            chart.contains("points=\"104.0,22.0 112.0,12.0 120.0,2.0\""),
            "{chart}"
        );
        assert_eq!(sparkline(&json!([])), "");
        assert!(!row.contains("href=\"javascript"), "{row}");
        assert!(!row.contains("out of memory"), "{row}");
        let killed = row_html(&json!({"name": "hog", "state": "failed", "oom_killed": true}));
        assert!(killed.contains(">out of memory</span>"), "{killed}");
    }
}
