//! The instance task: start -> wait until healthy -> supervise -> restart with backoff,
//! until a stop arrives. It alone writes the instance's status. Every time that decides
//! something (health timeout, check interval, backoff, stable run) is on tokio's clock.

use crate::tracking::Tracking;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ending::ended;

#[path = "task_runs.rs"]
mod runs;
#[path = "supervise.rs"]
mod supervise;
use super::{lock, log_len, App, Cmd, InstanceConfig, InstanceStatus, Ready, StartFailure, State};
use crate::health;
use crate::process::{Exit, Stopped};
use crate::spec::RestartPolicy;

/// How long an app may listen on other ports while nothing answers on `$PORT` before its
/// start fails (a server that opens a metrics port first gets this long to open `$PORT`).
pub(crate) const ELSEWHERE_GRACE: Duration = Duration::from_secs(3);
/// How often a start that is refused looks at where the app listens (reads /proc).
const ELSEWHERE_LOOK: Duration = Duration::from_millis(500);

/// A run that stayed up this long resets the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Lines of the app's output a failed start reports.
const TAIL_LINES: usize = 20;

/// A started app (or why it could not start), with the log offset at its start.
pub(super) type Spawned = (io::Result<Box<dyn App>>, u64);

/// What the app did while we waited for it to become healthy.
enum Waited {
    Healthy(String),
    Failed {
        reason: String,
        exit: Option<i32>,
    },
    /// A stop arrived (`None`: every handle is gone, the agent is shutting down).
    Stop(Option<Cmd>),
}

/// How supervising a healthy app ended.
enum Ended {
    /// It exited (with its code, when known).
    Exited {
        reason: String,
        code: Option<i32>,
    },
    /// It stayed unhealthy and the policy restarts it (it still runs).
    Unhealthy {
        reason: String,
    },
    Stop(Option<Cmd>),
}

pub(super) struct Task {
    pub(super) cfg: Arc<InstanceConfig>,
    status: Arc<Mutex<InstanceStatus>>,
    cmds: mpsc::Receiver<Cmd>,
}

impl Task {
    pub(super) fn new(
        cfg: Arc<InstanceConfig>,
        status: Arc<Mutex<InstanceStatus>>,
        cmds: mpsc::Receiver<Cmd>,
    ) -> Task {
        Task { cfg, status, cmds }
    }

    pub(super) fn set(&self, f: impl FnOnce(&mut InstanceStatus)) {
        f(&mut lock(&self.status));
    }

    /// Starts the app's process and records it; returns it with the log offset at start.
    pub(super) fn spawn(&self) -> Spawned {
        let log_offset = log_len(&self.cfg.log);
        let spawned = self.cfg.launcher.spawn(&self.cfg);
        if let Ok(app) = &spawned {
            let (id, tracking) = (app.id(), app.tracking().clone());
            self.cfg.observer.started(self.cfg.release, id, &tracking);
            self.set(|s| {
                s.pid = Some(id.pid);
                s.started_at = Some(SystemTime::now());
                s.adopted = false;
                s.tracking = tracking;
                s.run_counted = false;
            });
        }
        (spawned, log_offset)
    }

    /// The instance's life: start, wait for health, supervise, restart with backoff, stop.
    /// Long on purpose: the state machine is one loop, each turn one run of the app, so
    /// every transition is read in order here (the pieces it calls are in `task_runs.rs`
    /// and `ending.rs`).
    pub(super) async fn run(mut self, first: Spawned, ready: Option<Ready>) {
        let mut ready = ready;
        let mut backoff = BACKOFF_FIRST;
        let mut first = Some(first);
        loop {
            let (spawned, log_offset) = match first.take() {
                Some(f) => f,
                None => self.spawn(),
            };
            let mut app = match spawned {
                Ok(app) => app,
                Err(e) => {
                    let reason = format!("cannot start the command: {e}");
                    if let Some(r) = ready.take() {
                        self.set(|s| {
                            s.state = State::Failed;
                            s.message = reason.clone();
                        });
                        let _ = r.send(Err(StartFailure {
                            reason,
                            tail: vec![],
                        }));
                        return;
                    }
                    self.set(|s| s.message = reason.clone());
                    if !self.wait_before_restart(&mut backoff, &reason).await {
                        return;
                    }
                    continue;
                }
            };
            let pid = app.id().pid;
            let initial = ready.is_some();
            self.set(|s| {
                s.state = if initial {
                    State::Deploying
                } else {
                    State::Pending
                };
                s.next_restart_at = None;
            });
            if app.adopted() {
                tracing::info!(deployment = %self.cfg.name, release = self.cfg.release, pid, "app adopted from an earlier run of the agent");
            } else {
                tracing::info!(deployment = %self.cfg.name, release = self.cfg.release, pid, "app started");
            }
            let started = Instant::now();

            match self.wait_healthy(&mut app).await {
                Waited::Healthy(summary) => {
                    self.set(|s| {
                        s.state = State::Healthy;
                        s.last_health = summary.clone();
                        s.message.clear();
                    });
                    // Restarted after it was unhealthy: back in traffic now.
                    self.back_in_traffic(&summary);
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(pid));
                    }
                }
                Waited::Stop(cmd) => return self.stop_and_end(&mut app, cmd).await,
                Waited::Failed { reason, exit } => {
                    // Before the stop: it removes the instance's groups.
                    self.count_run(app.tracking()).await;
                    stop(&mut app, self.cfg.kill_timeout).await;
                    self.set(|s| {
                        s.state = State::Failed;
                        s.pid = None;
                        s.message = reason.clone();
                        s.last_exit_code = exit.or(s.last_exit_code);
                    });
                    if let Some(r) = ready.take() {
                        let tail =
                            crate::logs::last_lines(&self.cfg.log, log_offset, TAIL_LINES).await;
                        let _ = r.send(Err(StartFailure { reason, tail }));
                        return;
                    }
                    tracing::warn!(deployment = %self.cfg.name, %reason, "restart did not become healthy");
                    if !self.wait_before_restart(&mut backoff, &reason).await {
                        return;
                    }
                    continue;
                }
            }

            // Supervising a healthy app.
            let (reason, exit_code) = match self.supervise(&mut app).await {
                Ended::Stop(cmd) => return self.stop_and_end(&mut app, cmd).await,
                Ended::Exited { reason, code } => (reason, code),
                Ended::Unhealthy { reason } => (reason, None),
            };
            // Unhealthy for too long while the policy restarts, or exited: nothing it
            // started (daemonized children included) outlives it or meets the next start.
            self.count_run(app.tracking()).await;
            stop(&mut app, self.cfg.kill_timeout).await;
            tracing::warn!(deployment = %self.cfg.name, %reason, "app failed");
            self.set(|s| {
                s.state = State::Failed;
                s.pid = None;
                s.message = reason.clone();
                if exit_code.is_some() {
                    s.last_exit_code = exit_code;
                }
            });
            // An exit whose code is unknown (an adopted app) counts as a failure.
            let restart = match exit_code {
                Some(code) => self.cfg.restart.restarts_after(code),
                None => self.cfg.restart != RestartPolicy::Never,
            };
            if !restart {
                self.cfg.observer.event(&format!(
                    "{reason}; not restarted (restart: {})",
                    self.cfg.restart.as_str()
                ));
                if exit_code == Some(0) {
                    self.set(|s| s.state = State::Stopped);
                }
                // Nothing more to run; wait until told to stop, then end.
                return self.idle_until_stop().await;
            }
            if started.elapsed() >= STABLE_AFTER {
                backoff = BACKOFF_FIRST;
            }
            if !self.wait_before_restart(&mut backoff, &reason).await {
                return;
            }
        }
    }

    /// One health check, timed for the metrics (on the wall clock: real latency).
    async fn check(&self, timeout: Duration) -> health::Checked {
        super::ending::check(&self.cfg, timeout).await
    }

    /// Polls quickly until healthy, the app exits, the timeout passes, or a stop arrives.
    /// An app that keeps listening on other ports while nothing answers on `$PORT` fails
    /// after [`ELSEWHERE_GRACE`], not after the whole health timeout.
    async fn wait_healthy(&mut self, app: &mut Box<dyn App>) -> Waited {
        let cfg = self.cfg.clone();
        let began = Instant::now();
        let deadline = began + cfg.health.timeout;
        let mut looked = began;
        let mut elsewhere_since: Option<Instant> = None;
        loop {
            if let Some(exit) = app.try_wait().await {
                return self
                    .port_noted(exited_early(app.tracking().clone(), exit).await)
                    .await;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let checked = self
                .check(remaining.clamp(Duration::from_millis(100), health::CHECK_TIMEOUT))
                .await;
            if checked.healthy {
                return Waited::Healthy(checked.summary);
            }
            self.set(|s| s.last_health = checked.summary.clone());
            if Instant::now() >= deadline {
                let reason = app.explain_unhealthy(cfg.host, cfg.port, &checked).await;
                return Waited::Failed { reason, exit: None };
            }
            if checked.refused && looked.elapsed() >= ELSEWHERE_LOOK {
                looked = Instant::now();
                // Listening on $HOST:$PORT itself (or on every address at $PORT) is not
                // elsewhere: a refused check then is a moment's race, not a wrong port.
                let elsewhere = app.listening().await.into_iter().any(|(ip, port)| {
                    !(port == cfg.port && (ip == cfg.host || ip.is_unspecified()))
                });
                if !elsewhere {
                    elsewhere_since = None;
                } else if elsewhere_since.get_or_insert(looked).elapsed() >= ELSEWHERE_GRACE {
                    let reason = app.explain_unhealthy(cfg.host, cfg.port, &checked).await;
                    return Waited::Failed { reason, exit: None };
                }
            }
            let delay = health::startup_poll_delay(began.elapsed()).min(remaining);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                exit = app.wait() => return self.port_noted(exited_early(app.tracking().clone(), exit).await).await,
                cmd = self.cmds.recv() => return Waited::Stop(cmd),
            }
        }
    }

    async fn port_noted(&self, waited: Waited) -> Waited {
        match waited {
            Waited::Failed { reason, exit } => Waited::Failed {
                reason: super::ending::port_note(&self.cfg, reason).await,
                exit,
            },
            other => other,
        }
    }
}

async fn exited_early(tracking: Tracking, exit: Exit) -> Waited {
    Waited::Failed {
        reason: format!(
            "the app {} before becoming healthy",
            ended(tracking, exit).await
        ),
        exit: exit.code(),
    }
}

/// Stops an app that failed (nobody waits for the answer).
async fn stop(app: &mut Box<dyn App>, grace: Duration) -> Stopped {
    app.stop(grace, None, Box::new(|_| {})).await
}
