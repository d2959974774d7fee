//! One running release of a deployment: a task that owns the app's process, waits for it
//! to become healthy, keeps checking it, and restarts it by policy with capped backoff.
//! Everyone else sees it through [`Instance`]: a status snapshot and a stop command.
//! The task's state machine is in `task.rs`, its checks of a running app in
//! `supervise.rs`; what it starts and checks goes through a
//! [`Launcher`] (`launcher.rs`), so its tests run it against a fake in paused time.

mod ending;
mod launcher;
mod task;
#[cfg(test)]
pub(crate) mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::process::{Launch, Stopped};
use crate::procstat::ProcId;
use crate::spec::{HealthSpec, RestartPolicy};
use crate::tracking::{Tracker, Tracking};

pub(crate) use launcher::{App, Launcher, Processes};
use task::Task;

/// Everything needed to run one release.
#[derive(Clone)]
pub(crate) struct InstanceConfig {
    pub name: String,
    pub release: u32,
    /// Memory, CPU and process limits of every process of the instance.
    pub limits: crate::limits::Limits,
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
    /// Starts, watches, stops and health-checks the app: [`Processes`] in the agent.
    pub launcher: Arc<dyn Launcher>,
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
    /// A run of the app (tracked as `tracking`) ended; `stats`: what the kernel said of
    /// its groups at the end (OOM kills, CPU throttling), for running totals.
    fn ran(&self, _tracking: &Tracking, _stats: &crate::limits::Stats) {}
    /// Another user's process listens on the instance's port (`why` says so): it must
    /// move to another port.
    fn port_taken(&self, _why: &str) {}
    /// The instance left traffic (`false`: it turned unhealthy) or is back in it (`true`:
    /// a check passed again): the node proxy's route is to follow.
    fn traffic(&self, _in_traffic: bool) {}
    /// Something a person wants to know happened (the app restarted, and why): the
    /// deployment's last event.
    fn event(&self, _text: &str) {}
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
    /// Stopped after its idle timeout; the next request wakes it (a deployment's state).
    Sleeping,
    /// A request is waking it (a deployment's state).
    Waking,
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
            State::Sleeping => "sleeping",
            State::Waking => "waking",
        }
    }

    /// Every state, for metrics that count deployments by state.
    pub(crate) const ALL: [State; 8] = [
        State::Pending,
        State::Deploying,
        State::Healthy,
        State::Unhealthy,
        State::Failed,
        State::Stopped,
        State::Sleeping,
        State::Waking,
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
    /// On tokio's clock, so that paused time in tests drives it.
    pub next_restart_at: Option<Instant>,
    /// The running process was adopted from an earlier run of the agent.
    pub adopted: bool,
    /// How every process of the running app is found (for usage and port ownership).
    pub tracking: Tracking,
    /// What the kernel said of the instance's runs that ended (their last figures summed).
    pub ended_runs: RunTotals,
    /// The run `tracking` names has ended and is counted in `ended_runs`.
    pub run_counted: bool,
    /// Taken out of traffic (unhealthy, or restarted for it) until a check passes again:
    /// the node proxy sends it no new requests.
    pub out_of_traffic: bool,
}

/// OOM kills and CPU throttling of an instance, summed over its runs: the kernel's figures
/// start again at 0 with each run's new groups.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RunTotals {
    pub oom_kills: u64,
    pub cpu_periods: u64,
    pub throttled_periods: u64,
    pub throttled_usec: u64,
    /// The memory limit the last run had (`None`: none, or not known yet).
    pub memory_limit: Option<u64>,
    /// The last run ended by an OOM kill.
    pub oom_killed: bool,
}

impl RunTotals {
    /// These totals with one run's figures added.
    pub(crate) fn plus(&self, s: &crate::limits::Stats) -> RunTotals {
        RunTotals {
            oom_kills: self.oom_kills + s.oom_kills,
            cpu_periods: self.cpu_periods + s.cpu_periods,
            throttled_periods: self.throttled_periods + s.throttled_periods,
            throttled_usec: self.throttled_usec + s.throttled_usec,
            memory_limit: s.memory_limit.or(self.memory_limit),
            oom_killed: self.oom_killed,
        }
    }
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
type StopReply = oneshot::Sender<(Option<u32>, Stopped)>;

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
        let app = task.cfg.launcher.adopt(id, tracking);
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
            ended_runs: RunTotals::default(),
            run_counted: false,
            out_of_traffic: false,
        }));
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let release = cfg.release;
        let task = Task::new(Arc::new(cfg), status.clone(), cmd_rx);
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
