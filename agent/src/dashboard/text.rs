//! The words of the page's "Last event" and "Last deploy" cells (the script renders the
//! same from the JSON).

use serde_json::Value;

/// How long a failed step's reason, and the last event, may be in their cells (all of it is
/// in the cell's title and on the deployment's page).
const REASON_CHARS: usize = 120;
const EVENT_CHARS: usize = 160;

/// "restarted: the app exited with code 1 (3m ago); re-adopted after an agent restart (20s
/// ago)": the last event, and the re-adoption when the agent took the app back; in its cell
/// (shortened) and in full for its title.
pub(super) fn last_event(d: &Value, now: i64) -> (String, String) {
    let mut parts = Vec::new();
    let mut full = Vec::new();
    if let Some(text) = d["last_event"].as_str().filter(|t| !t.is_empty()) {
        let at = d["last_event_at"].as_i64().unwrap_or(now);
        parts.push(format!(
            "{} ({} ago)",
            shorten(text, EVENT_CHARS),
            ago(now - at)
        ));
        full.push(format!("{text} ({} ago)", ago(now - at)));
    }
    if let Some(at) = d["adopted_at"].as_i64().filter(|a| *a > 0) {
        let adopted = format!("re-adopted after an agent restart ({} ago)", ago(now - at));
        parts.push(adopted.clone());
        full.push(adopted);
    }
    (parts.join("; "), full.join("; "))
}

/// The last deploy in its cell, and in full for its title: "ok in 1.2 s: resolve 5 ms,
/// fetch 12 ms, ..."; a failed one leads with its step and reason (shortened in the cell):
/// "✗ health: GET /health returned HTTP 500 ... (failed in 3.1 s)".
pub(super) fn last_deploy(d: &Value) -> (String, String) {
    let Some(steps) = d["steps"].as_array() else {
        return (String::new(), String::new());
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
    let total = ms_text(d["total_ms"].as_u64().unwrap_or(0));
    if d["ok"] == true {
        let text = format!("ok in {total}: {}", parts.join(", "));
        return (text.clone(), text);
    }
    // An older agent's summary names no step: the one marked failed.
    let step = d["failed_step"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            steps
                .iter()
                .find(|s| s["result"] == "failed")
                .and_then(|s| s["step"].as_str())
        })
        .unwrap_or("deploy");
    let reason = d["reason"].as_str().unwrap_or("");
    let first = reason.lines().next().unwrap_or("");
    let cell = if first.is_empty() {
        format!("✗ {step} (failed in {total})")
    } else {
        format!(
            "✗ {step}: {} (failed in {total})",
            shorten(first, REASON_CHARS)
        )
    };
    let title = format!(
        "failed in {total} at {step}: {reason}\nsteps: {}",
        parts.join(", ")
    );
    (cell, title)
}

/// At most `n` characters, "…" when cut.
fn shorten(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut t: String = text.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn ms_text(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// "45s", "12m", "3h", "2d".
pub(super) fn ago(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}
