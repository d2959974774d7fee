//! The instance task's bookkeeping around a run: waiting out the restart backoff,
//! counting what the kernel said of a run that ended, and ending the task on a stop.

use std::time::Duration;

use tokio::time::Instant;

use super::super::ending::kernel_stats;
use super::super::{lock, App, Cmd, State};
use super::{Task, BACKOFF_MAX};
use crate::process::Stopped;
use crate::tracking::Tracking;

impl Task {
    /// Sleeps the backoff (doubling it, capped), unless a stop arrives. `false`: stopped.
    /// A restart is the deployment's last event, with `why` (the run's failure).
    pub(super) async fn wait_before_restart(&mut self, backoff: &mut Duration, why: &str) -> bool {
        let delay = *backoff;
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        self.set(|s| {
            s.state = State::Failed;
            s.next_restart_at = Some(Instant::now() + delay);
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {
                self.set(|s| {
                    s.restarts += 1;
                    s.next_restart_at = None;
                });
                self.cfg.observer.restarted();
                self.cfg.observer.event(&format!("restarted: {why}"));
                true
            }
            cmd = self.cmds.recv() => {
                self.set(|s| {
                    s.state = State::Stopped;
                    s.next_restart_at = None;
                });
                if let Some(cmd) = cmd {
                    let _ = cmd.reply.send((None, Stopped::NotRunning));
                }
                false
            }
        }
    }

    /// Adds what the kernel says of a run that ends (its groups' last figures, read before
    /// they are removed) to the instance's totals, and tells the observer (for the
    /// metrics' running totals).
    pub(super) async fn count_run(&self, tracking: &Tracking) {
        let Some(stats) = kernel_stats(tracking.clone()).await else {
            return;
        };
        self.set(|s| {
            s.ended_runs = s.ended_runs.plus(&stats);
            s.ended_runs.oom_killed = stats.oom_kills > 0;
            s.run_counted = s.tracking.id == tracking.id;
        });
        self.cfg.observer.ran(tracking, &stats);
        if stats.oom_kills > 0 {
            // `deployctl logs` says it too, where the app's own last words are.
            let limit = stats
                .memory_limit
                .map(|l| format!(" at its {} limit", crate::capacity::bytes(l)))
                .unwrap_or_default();
            let line = format!(
                "[deploy-agent] a process of the app was killed: out of memory{limit} (resources.memory)\n"
            );
            let log = self.cfg.log.clone();
            let _ = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                crate::fsmode::append_private(&log).and_then(|mut f| f.write_all(line.as_bytes()))
            })
            .await;
        }
    }

    pub(super) async fn idle_until_stop(mut self) {
        if let Some(cmd) = self.cmds.recv().await {
            self.set(|s| s.state = State::Stopped);
            let _ = cmd.reply.send((None, Stopped::NotRunning));
        }
    }

    pub(super) async fn stop_and_end(&self, app: &mut Box<dyn App>, cmd: Option<Cmd>) {
        let Some(Cmd { reply, port_free }) = cmd else {
            // Every handle is gone (the agent is shutting down): leave the app running.
            return;
        };
        let pid = app.id().pid;
        let status = self.status.clone();
        let answer = move |how: Stopped| {
            let mut s = lock(&status);
            s.state = State::Stopped;
            s.pid = None;
            drop(s);
            let _ = reply.send((Some(pid), how));
        };
        let port = port_free.then_some((self.cfg.host, self.cfg.port));
        // Before the stop: it removes the instance's groups.
        self.count_run(app.tracking()).await;
        let how = app
            .stop(self.cfg.kill_timeout, port, Box::new(answer))
            .await;
        tracing::info!(deployment = %self.cfg.name, release = self.cfg.release, pid, how = how.as_str(), "app stopped");
    }
}
