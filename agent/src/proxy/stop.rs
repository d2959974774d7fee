//! Stopping the node proxy once it serves no deployment: SIGTERM, a few seconds to exit,
//! then SIGKILL; its pid file and control socket go with it (its routes file, empty, stays).

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::procstat::ProcId;

/// How long the proxy may take to exit after SIGTERM.
const EXIT_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Stops the proxy `id` (run from `dir`), waiting for it to exit.
pub(super) async fn stop(dir: &Path, id: ProcId) {
    let pid = Pid::from_raw(id.pid as i32);
    if id.is_running() {
        if let Err(e) = kill(pid, Signal::SIGTERM) {
            tracing::warn!(pid = id.pid, error = %e, "cannot stop the node proxy");
            return;
        }
    }
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    while !gone(id, pid) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                pid = id.pid,
                "the node proxy did not exit within 5 s of SIGTERM; killing it"
            );
            let _ = kill(pid, Signal::SIGKILL);
        }
        tokio::time::sleep(POLL).await;
        if tokio::time::Instant::now() >= deadline + EXIT_WAIT {
            tracing::error!(pid = id.pid, "the node proxy did not exit after SIGKILL");
            return;
        }
    }
    for file in ["proxy.pid", "control.sock"] {
        let _ = tokio::fs::remove_file(dir.join(file)).await;
    }
    tracing::info!(
        pid = id.pid,
        "the node proxy serves no deployment any more: stopped it (the next deploy starts it again)"
    );
}

/// SIGKILL for a proxy that does not answer, and a wait (5 s at most) for its exit.
pub(super) async fn kill_and_wait(id: ProcId) {
    let pid = Pid::from_raw(id.pid as i32);
    if id.is_running() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    while !gone(id, pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}

/// How the proxy ended, reaping it when it is the agent's own child ("killed by SIGKILL",
/// "exited with status 1"); "exited" when another process is its parent.
pub(super) fn reap(id: ProcId) -> String {
    use nix::sys::wait::WaitStatus;
    if crate::procstat::read(id.pid).is_none_or(|s| s.start_time != id.start_time) {
        return "exited".into();
    }
    match waitpid(Pid::from_raw(id.pid as i32), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {signal}"),
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        _ => "exited".into(),
    }
}

/// Whether the proxy has exited (reaped here when it is the agent's own child).
fn gone(id: ProcId, pid: Pid) -> bool {
    // Only this very process (same start time), never another that took its pid. Not our
    // child (adopted from an earlier agent run): ECHILD, and its parent reaps it.
    if crate::procstat::read(id.pid).is_some_and(|s| s.start_time == id.start_time) {
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
    !id.is_running()
}
