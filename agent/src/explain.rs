//! Explaining a failed start or a failed health check in words a person can act on: what
//! the check saw, where the app listens instead of `$HOST:$PORT`, its last lines of output.

use crate::health;
use crate::instance::InstanceConfig;
use crate::ports;
use crate::process::AppProcess;

/// A health failure, explained: what the check saw, and where the app listens instead.
/// `app` is the app's first process; every process of its instance is looked at (a server
/// may be a child that left the app's process group).
pub fn explain_unhealthy(cfg: &InstanceConfig, app: &AppProcess, last: &health::Checked) -> String {
    let target = format!("{}:{}", cfg.host, cfg.port);
    let mut reason = format!(
        "the health check of {target} did not pass: {}",
        last.summary
    );
    if last.refused {
        let members = crate::tracking::members(app.pid(), &app.tracking);
        let elsewhere: Vec<String> = ports::listening_of(&members)
            .into_iter()
            .map(|(ip, port)| format!("{ip}:{port}"))
            .collect();
        if elsewhere.is_empty() {
            reason = format!("nothing listens on {target} (connection refused); the app is running but opened no port: it must listen on $HOST:$PORT ({target})");
        } else {
            reason = format!(
                "nothing listens on {target} (connection refused); the app listens on {} instead: it must listen on $HOST:$PORT ({target})",
                elsewhere.join(", ")
            );
        }
    }
    reason
}

/// The last `n` lines written to `log` after `offset`.
pub fn log_tail(log: &std::path::Path, offset: u64, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(log) else {
        return vec![];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Read at most the last 64 KiB of this run's output.
    let start = offset.max(len.saturating_sub(64 * 1024));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return vec![];
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
