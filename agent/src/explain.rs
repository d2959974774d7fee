//! Explaining a failed start or a failed health check in words a person can act on: what
//! the check saw, where the app listens instead of `$HOST:$PORT`, its last lines of output.

use std::net::IpAddr;

use crate::health;
use crate::ports;
use crate::process::AppProcess;

/// A health failure, explained: what the check of `host:port` saw, and where the app
/// listens instead. `app` is the app's first process; every process of its instance is
/// looked at (a server may be a child that left the app's process group), on a blocking
/// thread (it reads /proc).
pub(crate) async fn explain_unhealthy(
    host: IpAddr,
    port: u16,
    app: &AppProcess,
    last: &health::Checked,
) -> String {
    let target = format!("{host}:{port}");
    let mut reason = format!(
        "the health check of {target} did not pass: {}",
        last.summary
    );
    if last.refused {
        let (pid, tracking) = (app.pid(), app.tracking.clone());
        let listening = tokio::task::spawn_blocking(move || {
            ports::listening_of(&crate::tracking::members(pid, &tracking))
        })
        .await
        .unwrap_or_default();
        let at_target = |ip: &IpAddr, p: u16| p == port && (*ip == host || ip.is_unspecified());
        let elsewhere: Vec<String> = listening
            .iter()
            .filter(|(ip, p)| !at_target(ip, *p))
            .map(|(ip, port)| format!("{ip}:{port}"))
            .collect();
        if !elsewhere.is_empty() {
            reason = format!(
                "nothing listens on {target} (connection refused); the app listens on {} instead: it must listen on $HOST:$PORT ({target})",
                elsewhere.join(", ")
            );
        } else if listening.iter().any(|(ip, p)| at_target(ip, *p)) {
            reason = format!(
                "the app listens on {target}, but the last check's connection was refused ({}): it may have closed its listener or be overloaded",
                last.summary
            );
        } else {
            reason = format!("nothing listens on {target} (connection refused); the app is running but opened no port: it must listen on $HOST:$PORT ({target})");
        }
    }
    reason
}
