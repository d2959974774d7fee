//! One running release of a deployment: a task that owns the app's process, waits for it
//! to become healthy, keeps checking it, and restarts it by policy with capped backoff.
//! Everyone else sees it through [`Instance`]: a status snapshot and a stop command.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use crate::explain::explain_unhealthy;
use crate::health;
use crate::process::{self, AppProcess, Exit, Launch, Stopped};
use crate::procstat::ProcId;
use crate::spec::{HealthSpec, RestartPolicy};
use crate::tracking::{Tracker, Tracking};

/// Consecutive failed checks after which a healthy app counts as unhealthy.
const UNHEALTHY_AFTER: u32 = 3;
/// A run that stayed up this long resets the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Lines of the app's output a failed start reports.
const TAIL_LINES: usize = 20;

/// Everything needed to run one release.
#[derive(Clone)]
pub(crate) struct InstanceConfig {
    pub name: String,
    pub release: u32,
    pub launch: Launch,
    pub log: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    pub health: HealthSpec,
    pub restart: RestartPolicy,
    pub kill_timeout: Duration,
    /// Told about every process start, restart and health check.
    pub observer: Arc<dyn Observer>,
    /// Gives each start of the app its id (and cgroup), so all its processes are found.
    pub tracker: Arc<Tracker>,
}

impl std::fmt::Debug for InstanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceConfig")
            .field("name", &self.name)
            .field("release", &self.release)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// What an instance tells the rest of the agent: each process it starts (so the node-local
/// record always names the running one, for re-adoption after an agent restart), and its
/// restarts and health checks (for metrics).
pub(crate) trait Observer: Send + Sync {
    /// A process of `release` was started (or adopted), tracked as `tracking` says.
    fn started(&self, release: u32, id: ProcId, tracking: &Tracking);
    /// The policy restarted the app.
    fn restarted(&self);
    /// One health check took `latency`.
    fn checked(&self, latency: Duration, healthy: bool);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Started (or restarted), not yet healthy.
    Pending,
    /// The first start of a new release, while its deploy waits for it.
    Deploying,
    Healthy,
    Unhealthy,
    /// Exited or never became healthy; may be waiting for a restart.
    Failed,
    Stopped,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Deploying => "deploying",
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }

    /// Every state, for metrics that count deployments by state.
    pub(crate) const ALL: [State; 6] = [
        State::Pending,
        State::Deploying,
        State::Healthy,
        State::Unhealthy,
        State::Failed,
        State::Stopped,
    ];
}

/// A snapshot others read; written only by the instance task.
#[derive(Debug, Clone)]
pub(crate) struct InstanceStatus {
    pub state: State,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    pub restarts: u32,
    pub last_health: String,
    /// Why the state is what it is, when that needs saying.
    pub message: String,
    pub last_exit_code: Option<i32>,
    pub next_restart_at: Option<Instant>,
    /// The running process was adopted from an earlier run of the agent.
    pub adopted: bool,
    /// How every process of the running app is found (for usage and port ownership).
    pub tracking: Tracking,
}

/// Why a new release did not become healthy.
#[derive(Debug, Clone)]
pub(crate) struct StartFailure {
    pub reason: String,
    /// The app's own last lines of output.
    pub tail: Vec<String>,
}

/// A stop: SIGTERM, grace, SIGKILL.
struct Cmd {
    reply: StopReply,
    /// Answer as soon as nothing listens on the app's port any more (it may still be
    /// exiting), rather than once it has exited.
    port_free: bool,
}

/// A handle on a running release.
#[derive(Debug)]
pub(crate) struct Instance {
    pub release: u32,
    pub status: Arc<Mutex<InstanceStatus>>,
    cmds: mpsc::Sender<Cmd>,
}

type Ready = oneshot::Sender<Result<u32, StartFailure>>;

impl Instance {
    /// Starts the release; the receiver learns once whether it became healthy (with its pid).
    pub(crate) fn start(
        cfg: InstanceConfig,
    ) -> (Instance, oneshot::Receiver<Result<u32, StartFailure>>) {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (instance, task) = Instance::new(cfg, State::Deploying);
        // The first process starts here, so the caller sees its pid at once.
        let first = task.spawn();
        tokio::spawn(task.run(first, Some(ready_tx)));
        (instance, ready_rx)
    }

    /// Starts a release again after the agent restarted and found its app gone (a reboot):
    /// like a restart, not a deploy, so it is retried by its restart policy.
    pub(crate) fn restore(cfg: InstanceConfig) -> Instance {
        let (instance, task) = Instance::new(cfg, State::Pending);
        let first = task.spawn();
        tokio::spawn(task.run(first, None));
        instance
    }

    /// Takes over an app started by an earlier run of the agent (same pid and start time),
    /// checks its health and supervises it from then on as if this run had started it.
    pub(crate) fn adopt(cfg: InstanceConfig, id: ProcId, tracking: Tracking) -> Instance {
        let (instance, task) = Instance::new(cfg, State::Pending);
        task.cfg.observer.started(task.cfg.release, id, &tracking);
        task.set(|s| {
            s.pid = Some(id.pid);
            s.started_at = process_started_at(id);
            s.adopted = true;
            s.tracking = tracking.clone();
        });
        let log_offset = log_len(&task.cfg.log);
        let app = AppProcess::adopt(id, tracking);
        tokio::spawn(task.run((Ok(app), log_offset), None));
        instance
    }

    fn new(cfg: InstanceConfig, state: State) -> (Instance, Task) {
        let status = Arc::new(Mutex::new(InstanceStatus {
            state,
            pid: None,
            started_at: None,
            restarts: 0,
            last_health: String::new(),
            message: String::new(),
            last_exit_code: None,
            next_restart_at: None,
            adopted: false,
            tracking: Tracking::default(),
        }));
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let release = cfg.release;
        let task = Task {
            cfg: Arc::new(cfg),
            status: status.clone(),
            cmds: cmd_rx,
        };
        let instance = Instance {
            release,
            status,
            cmds: cmd_tx,
        };
        (instance, task)
    }

    pub(crate) fn snapshot(&self) -> InstanceStatus {
        lock(&self.status).clone()
    }

    /// Stops the app (SIGTERM, grace, SIGKILL) and ends the task.
    pub(crate) async fn stop(&self) -> (Option<u32>, Stopped) {
        self.send_stop(false).await
    }

    /// Stops the app like [`Instance::stop`], but answers as soon as nothing listens on its
    /// host and port any more, so that a new release can bind them: [`Stopped::Exiting`]
    /// when the app is still exiting then (uvicorn closes its socket ~100 ms before it
    /// exits). The stop goes on without the caller, with SIGKILL after the kill timeout.
    pub(crate) async fn stop_freeing_port(&self) -> (Option<u32>, Stopped) {
        self.send_stop(true).await
    }

    async fn send_stop(&self, port_free: bool) -> (Option<u32>, Stopped) {
        let (reply, rx) = oneshot::channel();
        if self.cmds.send(Cmd { reply, port_free }).await.is_err() {
            return (None, Stopped::NotRunning);
        }
        rx.await.unwrap_or((None, Stopped::NotRunning))
    }
}

fn lock(m: &Mutex<InstanceStatus>) -> std::sync::MutexGuard<'_, InstanceStatus> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_len(log: &std::path::Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// When an adopted process started, from its start time in ticks after boot.
fn process_started_at(id: ProcId) -> Option<SystemTime> {
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let uptime_s: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)? as f64;
    let age = (uptime_s - id.start_time as f64 / ticks).max(0.0);
    SystemTime::now().checked_sub(Duration::from_secs_f64(age))
}

type StopReply = oneshot::Sender<(Option<u32>, Stopped)>;

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

struct Task {
    cfg: Arc<InstanceConfig>,
    status: Arc<Mutex<InstanceStatus>>,
    cmds: mpsc::Receiver<Cmd>,
}

impl Task {
    fn set(&self, f: impl FnOnce(&mut InstanceStatus)) {
        f(&mut lock(&self.status));
    }

    /// Starts the app's process and records it; returns it with the log offset at start.
    fn spawn(&self) -> (std::io::Result<AppProcess>, u64) {
        let log_offset = log_len(&self.cfg.log);
        let tracking = self
            .cfg
            .tracker
            .new_instance(&self.cfg.name, self.cfg.release);
        let spawned = process::spawn_app(&self.cfg.launch, &self.cfg.log, &tracking);
        match &spawned {
            Ok(p) => {
                let id = p.id;
                self.cfg.observer.started(self.cfg.release, id, &tracking);
                self.set(|s| {
                    s.pid = Some(id.pid);
                    s.started_at = Some(SystemTime::now());
                    s.adopted = false;
                    s.tracking = tracking;
                });
            }
            Err(_) => crate::tracking::release(&tracking),
        }
        (spawned, log_offset)
    }

    async fn run(mut self, first: (std::io::Result<AppProcess>, u64), ready: Option<Ready>) {
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
                    self.set(|s| s.message = reason);
                    if !self.wait_before_restart(&mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            let pid = app.pid();
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
                        s.last_health = summary;
                        s.message.clear();
                    });
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(pid));
                    }
                }
                Waited::Stop(cmd) => return self.stop_and_end(&mut app, cmd).await,
                Waited::Failed { reason, exit } => {
                    process::stop_group(&mut app, self.cfg.kill_timeout).await;
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
                    if !self.wait_before_restart(&mut backoff).await {
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
            process::stop_group(&mut app, self.cfg.kill_timeout).await;
            tracing::warn!(deployment = %self.cfg.name, %reason, "app failed");
            self.set(|s| {
                s.state = State::Failed;
                s.pid = None;
                s.message = reason;
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
                if exit_code == Some(0) {
                    self.set(|s| s.state = State::Stopped);
                }
                // Nothing more to run; wait until told to stop, then end.
                return self.idle_until_stop().await;
            }
            if started.elapsed() >= STABLE_AFTER {
                backoff = BACKOFF_FIRST;
            }
            if !self.wait_before_restart(&mut backoff).await {
                return;
            }
        }
    }

    /// One health check, timed for the metrics.
    async fn check(&self, timeout: Duration) -> health::Checked {
        let cfg = &self.cfg;
        let began = Instant::now();
        let checked = health::check(cfg.host, cfg.port, cfg.health.path.as_deref(), timeout).await;
        cfg.observer.checked(began.elapsed(), checked.healthy);
        checked
    }

    /// Polls quickly until healthy, the app exits, the timeout passes, or a stop arrives.
    async fn wait_healthy(&mut self, app: &mut AppProcess) -> Waited {
        let cfg = self.cfg.clone();
        let began = Instant::now();
        let deadline = began + cfg.health.timeout;
        loop {
            if let Some(exit) = app.try_wait() {
                return exited_early(exit);
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
                let reason = explain_unhealthy(cfg.host, cfg.port, app, &checked).await;
                return Waited::Failed { reason, exit: None };
            }
            let delay = health::startup_poll_delay(began.elapsed()).min(remaining);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                exit = app.wait() => return exited_early(exit),
                cmd = self.cmds.recv() => return Waited::Stop(cmd),
            }
        }
    }

    /// Checks every interval; returns when the app exits, stays unhealthy (and the policy
    /// restarts), or a stop arrives.
    async fn supervise(&mut self, app: &mut AppProcess) -> Ended {
        let cfg = self.cfg.clone();
        let mut failures = 0;
        loop {
            tokio::select! {
                exit = app.wait() => {
                    return Ended::Exited { reason: format!("the app {}", exit.describe()), code: exit.code() };
                }
                cmd = self.cmds.recv() => return Ended::Stop(cmd),
                _ = tokio::time::sleep(cfg.health.interval) => {
                    let checked = self.check(health::CHECK_TIMEOUT).await;
                    if checked.healthy {
                        failures = 0;
                        self.set(|s| {
                            s.state = State::Healthy;
                            s.last_health = checked.summary;
                            s.message.clear();
                        });
                        continue;
                    }
                    failures += 1;
                    let unhealthy = failures >= UNHEALTHY_AFTER;
                    let reason = if unhealthy {
                        explain_unhealthy(cfg.host, cfg.port, app, &checked).await
                    } else {
                        String::new()
                    };
                    self.set(|s| {
                        s.last_health = checked.summary.clone();
                        if unhealthy {
                            s.state = State::Unhealthy;
                            s.message = reason.clone();
                        }
                    });
                    if unhealthy && cfg.restart != RestartPolicy::Never {
                        return Ended::Unhealthy { reason };
                    }
                }
            }
        }
    }

    /// Sleeps the backoff (doubling it, capped), unless a stop arrives. `false`: stopped.
    async fn wait_before_restart(&mut self, backoff: &mut Duration) -> bool {
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

    async fn idle_until_stop(mut self) {
        if let Some(cmd) = self.cmds.recv().await {
            self.set(|s| s.state = State::Stopped);
            let _ = cmd.reply.send((None, Stopped::NotRunning));
        }
    }

    async fn stop_and_end(&self, app: &mut AppProcess, cmd: Option<Cmd>) {
        let Some(Cmd { reply, port_free }) = cmd else {
            // Every handle is gone (the agent is shutting down): leave the app running.
            return;
        };
        let pid = app.pid();
        let status = self.status.clone();
        let answer = move |how: Stopped| {
            let mut s = lock(&status);
            s.state = State::Stopped;
            s.pid = None;
            drop(s);
            let _ = reply.send((Some(pid), how));
        };
        let (host, port) = (self.cfg.host, self.cfg.port);
        let how = if port_free {
            let free = || crate::ports::bindable(host, port);
            process::stop_group_releasing(app, self.cfg.kill_timeout, free, answer).await
        } else {
            let how = process::stop_group(app, self.cfg.kill_timeout).await;
            answer(how);
            how
        };
        tracing::info!(deployment = %self.cfg.name, release = self.cfg.release, pid, how = how.as_str(), "app stopped");
    }
}

fn exited_early(exit: Exit) -> Waited {
    Waited::Failed {
        reason: format!("the app {} before becoming healthy", exit.describe()),
        exit: exit.code(),
    }
}
