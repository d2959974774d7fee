//! The dashboard's pages: the fleet (one row per deployment, one cell per agent) and a
//! deployment's page (its history from the state, its log tail from each agent). Every
//! value is escaped.

use deployctl_proto::v1 as pb;
use serde_json::Value;

use super::Ctx;
use crate::client::{self, Call, Limit};
use crate::state;

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

pub(super) fn fleet_page(data: &Value) -> String {
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
pub(super) async fn deployment_page(ctx: &Ctx, name: &str) -> String {
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
                escape(&crate::cmd::history::time_text(h.time)),
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
.badge.deploying,.badge.pending{background:#ef6c00}.badge.stopped{background:#616161}.badge.sleeping,.badge.waking{background:#3949ab}\
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_escape_what_agents_say() {
        let c = serde_json::json!({"state": "failed", "release": 1, "ref": "<b>", "commit": "abc",
                       "message": "<script>x()</script>"});
        let html = cell_html(&c);
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert_eq!(cell_html(&Value::Null), "<td class=\"absent\">—</td>");
    }
}
