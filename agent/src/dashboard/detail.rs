//! A deployment's own page (`GET /deployments/NAME/`): its release history and the tail of
//! its app's output, for its owner.

use serde_json::{json, Value};

use super::{escape, STYLE};
use crate::supervisor::Supervisor;

/// A deployment's history and the tail of its app's output (secrets redacted), when the
/// caller `token` names may see them; `None` otherwise (or when there is no such one).
pub(crate) async fn detail(sup: &Supervisor, name: &str, token: Option<&str>) -> Option<Value> {
    let d = sup.registry().get(name)?;
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
    let last_event = record
        .last_event
        .map(|e| json!({"text": e.text, "at": e.at}));
    Some(json!({"name": name, "history": history, "log": log,
                "last_deploy": super::last_deploy(sup, name), "last_event": last_event}))
}

/// How many of the app's last lines a deployment's page shows.
const LOG_LINES: usize = 40;

/// A deployment's page: rendered here when `data` is given, else filled in by the script
/// with the session's token (or saying that a token is needed).
pub(crate) fn detail_page(name: &str, data: Option<&Value>) -> String {
    let name_html = escape(name);
    // The last deploy with its whole reason when it failed, and the last event.
    let last = match data {
        Some(d) => {
            let deploy = super::text::last_deploy(&d["last_deploy"]).1;
            let event = match d["last_event"]["text"].as_str() {
                Some(t) => {
                    let ago =
                        crate::clock::now_unix() - d["last_event"]["at"].as_i64().unwrap_or(0);
                    format!("{t} ({} ago)", super::text::ago(ago))
                }
                None => String::new(),
            };
            format!("Last deploy: {deploy}\nLast event: {event}")
        }
        None => String::new(),
    };
    let last = escape(&last);
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
<p><a href=\"/\">← all deployments</a></p><h1>{name_html}</h1><pre id=\"last\">{last}</pre><h2>History</h2>\
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
      const l = d.last_deploy, steps = l && l.steps ? l.steps.filter(s => s.result !== 'skipped').map(s => s.step + ' ' + s.ms + ' ms' + (s.result === 'failed' ? ' ✗' : '')).join(', ') : '';
      const deploy = !l || !l.steps ? '' : l.ok ? 'ok in ' + l.total_ms + ' ms: ' + steps : 'failed in ' + l.total_ms + ' ms at ' + (l.failed_step || 'deploy') + ': ' + (l.reason || '') + '\nsteps: ' + steps;
      document.getElementById('last').textContent = 'Last deploy: ' + deploy + '\nLast event: ' + (d.last_event ? d.last_event.text : '');
    }).catch(() => {});
})();
"#;
