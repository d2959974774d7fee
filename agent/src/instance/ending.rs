//! How a run of an app ended, in words a person can act on: an OOM kill at the instance's
//! memory limit, or a port another user's process took (then the deployment moves); and
//! the health check that notices such a port.

use std::time::Duration;

use super::InstanceConfig;
use crate::health;
use crate::process::Exit;
use crate::tracking::Tracking;

/// How the app ended, in words: a kill by the kernel's OOM killer at the instance's
/// memory limit says so ("was killed: out of memory at its 256 MiB limit").
pub(super) async fn ended(tracking: Tracking, exit: Exit) -> String {
    let (_, signal) = exit.code_and_signal();
    let killed = signal.is_none_or(|s| s == nix::libc::SIGKILL);
    if !killed {
        return exit.describe();
    }
    let Some(stats) = kernel_stats(tracking).await.filter(|s| s.oom_kills > 0) else {
        return exit.describe();
    };
    match stats.memory_limit {
        Some(limit) => format!(
            "was killed: out of memory at its {} limit",
            crate::capacity::bytes(limit)
        ),
        None => "was killed: out of memory".to_string(),
    }
}

/// What the kernel says of an instance's groups (read on a blocking thread); `None` when
/// it has none.
pub(super) async fn kernel_stats(tracking: Tracking) -> Option<crate::limits::Stats> {
    if tracking.limits.is_empty() && tracking.cgroup.is_none() {
        return None;
    }
    tokio::task::spawn_blocking(move || tracking.stats())
        .await
        .ok()
}

/// `reason` an app ended for, and why when another user's process holds its port (the app
/// could not bind it): then the deployment is moved to another port.
pub(super) async fn port_note(cfg: &InstanceConfig, reason: String) -> String {
    let Some(walls) = &cfg.launch.walls else {
        return reason;
    };
    match health::foreign_listener(cfg.host, cfg.port, walls.uid).await {
        Some(why) => {
            cfg.observer.port_taken(&why);
            format!("{reason} ({why})")
        }
        None => reason,
    }
}

/// One health check of `cfg`'s instance, timed for the metrics (on the wall clock: real
/// latency). An answer from another user's process on its port is not the app's.
pub(super) async fn check(cfg: &InstanceConfig, timeout: Duration) -> health::Checked {
    let began = std::time::Instant::now();
    let mut checked = cfg
        .launcher
        .check(cfg.host, cfg.port, cfg.health.path.as_deref(), timeout)
        .await;
    if let (true, Some(walls)) = (checked.healthy, &cfg.launch.walls) {
        if let Some(why) = health::foreign_listener(cfg.host, cfg.port, walls.uid).await {
            cfg.observer.port_taken(&why);
            checked = health::Checked {
                healthy: false,
                summary: why,
                refused: false,
            };
        }
    }
    cfg.observer.checked(began.elapsed(), checked.healthy);
    checked
}
