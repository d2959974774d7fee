//! The agent is the child subreaper of everything it starts: a process an app orphans
//! (a double fork, a `setsid` daemon, a worker whose parent died) becomes the agent's child
//! rather than pid 1's, so it stays findable, and the agent reaps it when it exits. Where
//! pid 1 does not reap (containers), such orphans would otherwise stay zombies forever.
//!
//! The agent's own children (apps, scripts, installers) are reaped by whoever spawned them
//! (tokio, std), which wait for them at once; reaping one of those first would take its exit
//! status away. So only a child that is still a zombie one scan later (a second) is reaped.

use std::collections::HashSet;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::procstat;

/// How often the agent looks for zombie children.
const SCAN_PERIOD: Duration = Duration::from_secs(1);

/// Makes the agent the child subreaper (Linux 3.4+); logs when it cannot.
pub(crate) fn become_subreaper() {
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => tracing::debug!("the agent is the child subreaper of its apps"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot become child subreaper: orphans of apps go to pid 1")
        }
    }
}

/// Reaps orphaned zombie children forever (run as a task).
pub(crate) async fn reap_orphans() {
    let mut seen: HashSet<(u32, u64)> = HashSet::new();
    loop {
        tokio::time::sleep(SCAN_PERIOD).await;
        let before = std::mem::take(&mut seen);
        seen = tokio::task::spawn_blocking(move || reap_once(&before))
            .await
            .unwrap_or_default();
    }
}

/// Reaps the zombie children that were zombies at the previous scan too; returns the
/// zombies seen now for the next scan.
fn reap_once(before: &HashSet<(u32, u64)>) -> HashSet<(u32, u64)> {
    let mut now = HashSet::new();
    // Orphans are given to any thread of the agent: children of every thread.
    for pid in procstat::children(std::process::id()) {
        let Some(stat) = procstat::read(pid) else {
            continue;
        };
        if stat.is_live() {
            continue;
        }
        let key = (pid, stat.start_time);
        if before.contains(&key) {
            match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(status) => tracing::debug!(pid, ?status, "reaped an orphaned process"),
                Err(e) => tracing::debug!(pid, error = %e, "could not reap"),
            }
        } else {
            now.insert(key);
        }
    }
    now
}
