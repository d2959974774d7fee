//! The page's style, its login form and the script that keeps its table fresh (every value
//! rendered as text: the browser escapes it).

/// Next to the state when an instance's last exit was an OOM kill.
pub(super) const OOM_BADGE: &str = " <span class=\"badge failed oom\">out of memory</span>";

pub(super) const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}.badge{padding:.1em .5em;border-radius:.8em;color:#fff;background:#888}\
.badge.healthy{background:#2e7d32}.badge.unhealthy,.badge.failed{background:#c62828}\
.badge.deploying,.badge.pending,.badge.restarting{background:#ef6c00}.badge.stopped{background:#616161}.badge.sleeping,.badge.waking{background:#3949ab}\
small,.note{color:#777}form{margin:.5em 0 1em}svg.spark{display:block;margin-top:.2em}";

pub(super) const LOGIN: &str =
    "<form id=\"login\">This agent requires a token to show more than names and states: \
<input id=\"token\" type=\"password\" placeholder=\"token\" autocomplete=\"off\"> \
<button>Show</button></form>";

/// Fetches the JSON (with the session's token) and renders the rows as text nodes: the
/// browser escapes them.
pub(super) const SCRIPT: &str = r#"
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
      lastEvent(d)[0], lastDeploy(d.last_deploy)[0], d.url || ''];
  }
  const msText = v => v >= 1000 ? (v / 1000).toFixed(1) + ' s' : v + ' ms';
  const ago = s => { s = Math.max(0, s); return s < 120 ? s + 's' : s < 7200 ? Math.floor(s / 60) + 'm' : s < 172800 ? Math.floor(s / 3600) + 'h' : Math.floor(s / 86400) + 'd'; };
  const shorten = (t, n) => [...t].length <= n ? t : [...t].slice(0, n - 1).join('') + '…';
  // The cell's text and its title.
  function lastEvent(d) {
    const now = Math.floor(Date.now() / 1000), parts = [], full = [];
    if (d.last_event) { const when = ' (' + ago(now - (d.last_event_at || now)) + ' ago)'; parts.push(shorten(d.last_event, 160) + when); full.push(d.last_event + when); }
    if (d.adopted_at) { const a = 're-adopted after an agent restart (' + ago(now - d.adopted_at) + ' ago)'; parts.push(a); full.push(a); }
    return [parts.join('; '), full.join('; ')];
  }
  // The cell's text and its title: a failed deploy leads with its step and reason.
  function lastDeploy(l) {
    if (!l || !l.steps) return ['', ''];
    const parts = l.steps.filter(s => s.result !== 'skipped').map(s => s.step + ' ' + msText(s.ms) + (s.result === 'failed' ? ' ✗' : ''));
    const total = msText(l.total_ms);
    if (l.ok) { const t = 'ok in ' + total + ': ' + parts.join(', '); return [t, t]; }
    const failed = l.steps.find(s => s.result === 'failed');
    const step = l.failed_step || (failed && failed.step) || 'deploy', reason = l.reason || '';
    const first = shorten(reason.split('\n')[0], 120);
    return [first ? '✗ ' + step + ': ' + first + ' (failed in ' + total + ')' : '✗ ' + step + ' (failed in ' + total + ')',
      'failed in ' + total + ' at ' + step + ': ' + reason + '\nsteps: ' + parts.join(', ')];
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
        else if (i === 1) { const b = document.createElement('span'); b.className = 'badge ' + d.state; b.textContent = c; td.appendChild(b); if (d.oom_killed) { const o = document.createElement('span'); o.className = 'badge failed oom'; o.textContent = 'out of memory'; td.append(' ', o); } if (d.message) { const w = document.createElement('small'); w.className = 'why'; w.textContent = d.message; td.append(document.createElement('br'), w); } }
        else if (i === 8) { td.textContent = c; td.title = lastEvent(d)[1]; }
        else if (i === 9) { td.textContent = c; td.title = lastDeploy(d.last_deploy)[1]; }
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
