//! Supervising a running app: a check every `health.interval` (start to start, each one
//! answered within the interval), consecutive failures counted. After `unhealthy_after`
//! the instance is unhealthy at once and out of traffic (the observer has the node proxy
//! send it nothing new); after `restart_after` its policy restarts it; a check that passes
//! again makes it healthy and back in traffic.

use std::time::Duration;

use tokio::time::Instant;

use super::super::ending::{ended, port_note};
use super::super::{lock, App, State};
use super::{Ended, Task};
use crate::health;
use crate::spec::RestartPolicy;

/// The shortest time a check of a running app may take before it counts as failed.
const MIN_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one check of a running app may take: its interval (so a hung app fails a check
/// every interval), at least [`MIN_CHECK_TIMEOUT`], at most [`health::CHECK_TIMEOUT`].
pub(super) fn check_timeout(interval: Duration) -> Duration {
    interval.clamp(MIN_CHECK_TIMEOUT, health::CHECK_TIMEOUT)
}

/// What one check changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It passed; `recovered`: after the instance was unhealthy.
    Passed { recovered: bool },
    /// It failed, `n` in a row, not enough to act on.
    Failing(u32),
    /// `unhealthy_after` failures in a row: unhealthy now, out of traffic.
    Unhealthy,
    /// Still unhealthy, `n` failures in a row.
    StillUnhealthy(u32),
    /// `restart_after` failures in a row: restart it.
    Restart,
}

/// Consecutive failed checks of a running instance.
#[derive(Debug, Clone, Copy)]
pub(super) struct Failures {
    count: u32,
    unhealthy_after: u32,
    restart_after: u32,
    /// Its policy restarts an unhealthy instance (not `never`).
    restarts: bool,
}

impl Failures {
    pub(super) fn new(unhealthy_after: u32, restart_after: u32, restarts: bool) -> Failures {
        let unhealthy_after = unhealthy_after.max(1);
        Failures {
            count: 0,
            unhealthy_after,
            restart_after: restart_after.max(unhealthy_after),
            restarts,
        }
    }

    /// Counts one check.
    pub(super) fn record(&mut self, healthy: bool) -> Verdict {
        if healthy {
            let recovered = self.count >= self.unhealthy_after;
            self.count = 0;
            return Verdict::Passed { recovered };
        }
        self.count = self.count.saturating_add(1);
        match self.count {
            n if self.restarts && n >= self.restart_after => Verdict::Restart,
            n if n == self.unhealthy_after => Verdict::Unhealthy,
            n if n > self.unhealthy_after => Verdict::StillUnhealthy(n),
            n => Verdict::Failing(n),
        }
    }
}

impl Task {
    /// Checks every interval; returns when the app exits, its policy restarts it after
    /// `restart_after` failed checks, or a stop arrives.
    pub(super) async fn supervise(&mut self, app: &mut Box<dyn App>) -> Ended {
        let cfg = self.cfg.clone();
        let h = &cfg.health;
        let mut failures = Failures::new(
            h.unhealthy_after,
            h.restart_after,
            cfg.restart != RestartPolicy::Never,
        );
        let timeout = check_timeout(h.interval);
        let mut next = Instant::now() + h.interval;
        loop {
            tokio::select! {
                exit = app.wait() => {
                    let how = port_note(&cfg, ended(app.tracking().clone(), exit).await).await;
                    return Ended::Exited { reason: format!("the app {how}"), code: exit.code() };
                }
                cmd = self.cmds.recv() => return Ended::Stop(cmd),
                _ = tokio::time::sleep_until(next) => {
                    let began = Instant::now();
                    let checked = self.check(timeout).await;
                    next = (began + h.interval).max(Instant::now());
                    match failures.record(checked.healthy) {
                        Verdict::Passed { recovered } => {
                            self.set(|s| {
                                s.state = State::Healthy;
                                s.last_health = checked.summary.clone();
                                s.message.clear();
                            });
                            if recovered {
                                self.back_in_traffic(&checked.summary);
                            }
                        }
                        Verdict::Failing(_) => self.set(|s| s.last_health = checked.summary.clone()),
                        Verdict::Unhealthy => {
                            let reason = app.explain_unhealthy(cfg.host, cfg.port, &checked).await;
                            self.out_of_traffic(&checked.summary, &reason);
                        }
                        Verdict::StillUnhealthy(_) => self.set(|s| s.last_health = checked.summary.clone()),
                        Verdict::Restart => {
                            let reason = app.explain_unhealthy(cfg.host, cfg.port, &checked).await;
                            if !self.status_out_of_traffic() {
                                self.out_of_traffic(&checked.summary, &reason);
                            }
                            let n = cfg.health.restart_after;
                            return Ended::Unhealthy { reason: format!("{reason} ({n} checks in a row failed)") };
                        }
                    }
                }
            }
        }
    }

    fn status_out_of_traffic(&self) -> bool {
        lock(&self.status).out_of_traffic
    }

    /// `unhealthy_after` checks failed: unhealthy, and the node proxy sends it nothing new.
    fn out_of_traffic(&self, summary: &str, reason: &str) {
        self.set(|s| {
            s.state = State::Unhealthy;
            s.last_health = summary.to_string();
            s.message = reason.to_string();
            s.out_of_traffic = true;
        });
        tracing::warn!(deployment = %self.cfg.name, release = self.cfg.release, %reason, "unhealthy: no new requests");
        self.cfg.observer.traffic(false);
        let n = self.cfg.health.unhealthy_after;
        self.cfg.observer.event(&format!(
            "unhealthy ({n} checks in a row failed), no new requests: {reason}"
        ));
    }

    /// A check passed after the instance was out of traffic (unhealthy, or restarted for
    /// it): back in.
    pub(super) fn back_in_traffic(&self, summary: &str) {
        let was_out = std::mem::take(&mut lock(&self.status).out_of_traffic);
        if !was_out {
            return;
        }
        tracing::info!(deployment = %self.cfg.name, release = self.cfg.release, "healthy again: back in traffic");
        self.cfg.observer.traffic(true);
        self.cfg
            .observer
            .event(&format!("healthy again ({summary}): back in traffic"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_in_a_row_and_a_pass_starts_again() {
        let mut f = Failures::new(3, 6, true);
        assert_eq!(f.record(false), Verdict::Failing(1));
        assert_eq!(f.record(false), Verdict::Failing(2));
        assert_eq!(f.record(true), Verdict::Passed { recovered: false });
        assert_eq!(f.record(false), Verdict::Failing(1));
        assert_eq!(f.record(false), Verdict::Failing(2));
        assert_eq!(f.record(false), Verdict::Unhealthy);
        assert_eq!(f.record(false), Verdict::StillUnhealthy(4));
        assert_eq!(f.record(true), Verdict::Passed { recovered: true });
        for n in 1..=5 {
            assert_ne!(f.record(false), Verdict::Restart, "after {n}");
        }
        assert_eq!(f.record(false), Verdict::Restart);
    }

    #[test]
    fn without_restarts_an_unhealthy_instance_stays_unhealthy() {
        let mut f = Failures::new(2, 3, false);
        assert_eq!(f.record(false), Verdict::Failing(1));
        assert_eq!(f.record(false), Verdict::Unhealthy);
        for n in 3..10 {
            assert_eq!(f.record(false), Verdict::StillUnhealthy(n));
        }
    }

    #[test]
    fn restart_after_equal_to_unhealthy_after_restarts_at_once() {
        let mut f = Failures::new(2, 2, true);
        assert_eq!(f.record(false), Verdict::Failing(1));
        assert_eq!(f.record(false), Verdict::Restart);
    }

    #[test]
    fn a_check_answers_within_its_interval() {
        let s = Duration::from_secs;
        assert_eq!(check_timeout(s(1)), s(2));
        assert_eq!(check_timeout(Duration::from_millis(200)), s(2));
        assert_eq!(check_timeout(s(3)), s(3));
        assert_eq!(check_timeout(s(30)), health::CHECK_TIMEOUT);
    }
}
