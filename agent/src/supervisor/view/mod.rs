//! Deployments as `status`, the load balancers' health endpoints and `/metrics` see them:
//! read from each deployment's snapshot and the sampled resource use, never by probing
//! (`probes.rs`: what `/metrics` and the load balancers read of them).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Supervisor;
use crate::deployment::{Deployment, Snapshot};
use crate::error::{Error, Result};
use crate::instance::{InstanceStatus, RunTotals, State};
use crate::limits::Stats;
use crate::spec::Spec;
use crate::store::ReleaseRecord;

mod probes;
mod sleep;

/// A deployment as `status` shows it.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub spec: Option<Spec>,
    pub name: String,
    pub state: State,
    pub release: u32,
    pub git_ref: String,
    pub commit: String,
    pub packages_hash: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub url: String,
    pub uptime: Duration,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub last_health: String,
    pub message: String,
    pub last_exit_code: Option<i32>,
    pub next_restart_in: Option<Duration>,
    pub deployed_at: i64,
    /// The app's own address behind the node proxy.
    pub private_address: Option<std::net::SocketAddr>,
    pub switched_at: Option<i64>,
    pub previous_drained_ms: Option<u64>,
    pub traffic: Option<crate::traffic::Rates>,
    /// Every instance (with `replicas` > 1): the first, then the replicas.
    pub replicas: Vec<ReplicaView>,
    /// What the kernel says of its instances (summed; the limit is each one's).
    pub kernel: RunTotals,
    /// The running instances' last sampled figures, by instance id (for `/metrics`).
    pub live_runs: Vec<(String, Stats)>,
    /// The last thing that happened to it (kept across agent restarts).
    pub last_event: Option<crate::store::NodeEvent>,
    /// The last deploy, when it failed while the current release kept serving.
    pub failed_deploy: Option<crate::store::FailedDeploy>,
    /// When this agent re-adopted the running app (Unix seconds; it was started by an
    /// earlier run of the agent).
    pub adopted_at: Option<i64>,
    /// What a deploy may be based on (read with the release above).
    pub generation: u64,
    /// The last deploys, the one in progress and those waiting last.
    pub deploys: Vec<crate::store::DeployRecord>,
    /// How many instances of the current release run (as recorded).
    pub running_replicas: u32,
    /// Replicas that follow the load: the last scalings, and the load the autoscaler sees.
    pub scale_events: Vec<crate::autoscale::ScaleEvent>,
    pub in_flight_per_replica: Option<f64>,
}

/// One instance of a deployment with replicas.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaView {
    pub pid: Option<u32>,
    pub private_address: Option<std::net::SocketAddr>,
    pub state: State,
    pub restarts: u32,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub kernel: RunTotals,
    pub last_health: String,
    /// Why its state is what it is (an unhealthy replica: what its checks saw).
    pub message: String,
}

/// The state a deployment is in and why, from its snapshot: its first instance's, unless
/// that one is healthy and a replica is not.
fn state_of(s: &Snapshot) -> (State, String) {
    let n = s.replicas.len() + 1;
    if s.instance
        .as_ref()
        .is_some_and(|i| i.state == State::Healthy)
    {
        if let Some((i, (r, port))) = s
            .replicas
            .iter()
            .enumerate()
            .find(|(_, (r, _))| r.state != State::Healthy)
        {
            let why = if r.message.is_empty() {
                r.last_health.clone()
            } else {
                r.message.clone()
            };
            return (
                State::Unhealthy,
                format!(
                    "replica {} of {n} (port {port}) is {}: {why}",
                    i + 2,
                    r.state.as_str()
                ),
            );
        }
    }
    if let Some(asleep) = sleep::sleep_state(s) {
        return asleep;
    }
    match (&s.instance, s.deploying) {
        (Some(i), _) => (i.state, i.message.clone()),
        (None, Some(n)) => (State::Deploying, format!("release {n} is being deployed")),
        (None, None) if s.recorded_pid.is_some() => (
            State::Unhealthy,
            "the app was started by an earlier run of the agent and is not supervised".into(),
        ),
        (None, None) if s.stopped => (
            State::Stopped,
            "stopped with `deployctl stop`; `deployctl start` starts it again".into(),
        ),
        (None, None) if s.current.is_some() => (State::Stopped, String::new()),
        (None, None) => (State::Failed, s.last_result.clone().unwrap_or_default()),
    }
}

/// Two instances' figures together (the limit is each one's, not added).
fn sum(a: &RunTotals, b: &RunTotals) -> RunTotals {
    RunTotals {
        oom_kills: a.oom_kills + b.oom_kills,
        cpu_periods: a.cpu_periods + b.cpu_periods,
        throttled_periods: a.throttled_periods + b.throttled_periods,
        throttled_usec: a.throttled_usec + b.throttled_usec,
        memory_limit: a.memory_limit.max(b.memory_limit),
        oom_killed: a.oom_killed || b.oom_killed,
    }
}

/// How long the first instance's running process has run (zero when none runs).
fn uptime(first: Option<&InstanceStatus>) -> Duration {
    first
        .filter(|s| s.pid.is_some())
        .and_then(|s| s.started_at)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

impl Supervisor {
    pub(crate) fn status(&self, name: Option<&str>) -> Result<Vec<View>> {
        let deployments = match name {
            Some(n) => vec![self
                .registry()
                .get(n)
                .ok_or_else(|| Error::NotFound(n.to_string()))?],
            None => self.registry().all(),
        };
        Ok(deployments.iter().map(|d| self.view(d)).collect())
    }

    /// A deployment's view, read from its snapshot: its state (and the node proxy's
    /// trouble), then the figures each in its own function. Long on purpose: the rest is
    /// the `View` literal, one field per line, each read from the deployment's current
    /// release or first instance.
    fn view(&self, d: &Deployment) -> View {
        let snap = d.snapshot();
        let (state, message, proxy_trouble) = self.state_with_proxy(d, &snap);
        let Snapshot {
            current,
            instance,
            replicas: replica_snaps,
            last_event,
            failed_deploy,
            generation,
            deploys,
            ..
        } = snap;
        let adopted_at = self.adopted_at(instance.as_ref());
        let pid = instance.as_ref().and_then(|s| s.pid).or(snap.recorded_pid);
        let (totals, live_runs) = self.kernel_totals(instance.as_ref(), &replica_snaps);
        let replicas = self.replica_views(d, instance.as_ref(), &replica_snaps);
        let (cpu_percent, memory_bytes) = self.cpu_and_memory(pid, &replicas);
        let private_address = d.private_port().map(|p| self.app_host().private_address(p));
        let traffic = self.traffic_of(
            current.as_ref(),
            private_address.is_some(),
            proxy_trouble.is_some(),
        );
        let uptime = uptime(instance.as_ref());
        View {
            name: d.name().to_string(),
            state,
            release: current.as_ref().map(|r| r.number).unwrap_or(0),
            git_ref: current
                .as_ref()
                .map(|r| r.git_ref.clone())
                .unwrap_or_default(),
            commit: current
                .as_ref()
                .map(|r| r.commit.clone())
                .unwrap_or_default(),
            packages_hash: current
                .as_ref()
                .map(|r| r.packages_hash.clone())
                .unwrap_or_default(),
            pid,
            restarts: instance.as_ref().map(|s| s.restarts).unwrap_or(0)
                + replica_snaps.iter().map(|(r, _)| r.restarts).sum::<u32>(),
            url: current
                .as_ref()
                .map(|r| self.app_url(r.spec.port))
                .unwrap_or_default(),
            uptime,
            cpu_percent,
            memory_bytes,
            last_health: instance
                .as_ref()
                .map(|s| s.last_health.clone())
                .unwrap_or_default(),
            message,
            last_exit_code: instance.as_ref().and_then(|s| s.last_exit_code),
            next_restart_in: instance
                .as_ref()
                .and_then(|s| s.next_restart_at)
                .map(|t| t.saturating_duration_since(Instant::now())),
            deployed_at: current.as_ref().map(|r| r.deployed_at).unwrap_or(0),
            switched_at: current.as_ref().and_then(|r| r.switched_at),
            previous_drained_ms: current.as_ref().and_then(|r| r.previous_drained_ms),
            private_address,
            traffic,
            replicas,
            spec: current.map(|r| r.spec),
            kernel: totals,
            live_runs,
            last_event,
            failed_deploy,
            adopted_at,
            generation,
            deploys,
            running_replicas: d.running_count(),
            scale_events: d.scale_events(),
            in_flight_per_replica: d.in_flight_per_replica(),
        }
    }

    /// The deployment's state and why (`state_of`); behind a node proxy that does not
    /// serve, not served whatever the app's state: then also why the proxy does not.
    fn state_with_proxy(&self, d: &Deployment, snap: &Snapshot) -> (State, String, Option<String>) {
        let (mut state, mut message) = state_of(snap);
        let proxy_trouble = d.private_port().and(self.proxy().trouble());
        if let Some(why) = &proxy_trouble {
            if state == State::Healthy {
                state = State::Unhealthy;
            }
            message.clone_from(why);
        }
        (state, message, proxy_trouble)
    }

    /// When this agent re-adopted the running app (Unix seconds: when the agent started).
    fn adopted_at(&self, first: Option<&InstanceStatus>) -> Option<i64> {
        first
            .filter(|s| s.adopted && s.pid.is_some())
            .map(|_| crate::clock::now_unix() - self.uptime().as_secs() as i64)
    }

    /// What the kernel says of every instance, the first and the replicas (summed), and
    /// the running ones' last sampled figures.
    fn kernel_totals(
        &self,
        first: Option<&InstanceStatus>,
        replicas: &[(InstanceStatus, u16)],
    ) -> (RunTotals, Vec<(String, Stats)>) {
        let mut live_runs = Vec::new();
        let mut totals = RunTotals::default();
        for s in first.into_iter().chain(replicas.iter().map(|(r, _)| r)) {
            let (k, live) = self.kernel(s);
            live_runs.extend(live);
            totals = sum(&totals, &k);
        }
        (totals, live_runs)
    }

    /// CPU and memory: of the app's process tree, or with replicas of every instance.
    fn cpu_and_memory(&self, pid: Option<u32>, replicas: &[ReplicaView]) -> (f32, u64) {
        if replicas.is_empty() {
            self.usage_of(pid)
        } else {
            replicas.iter().fold((0.0, 0), |(c, m), r| {
                (c + r.cpu_percent, m + r.memory_bytes)
            })
        }
    }

    /// The last minute's traffic to the current release through the node proxy: none when
    /// it is not behind it, or when the proxy does not answer (what it served before it
    /// stopped answering is not its traffic now).
    fn traffic_of(
        &self,
        current: Option<&ReleaseRecord>,
        behind_proxy: bool,
        proxy_trouble: bool,
    ) -> Option<crate::traffic::Rates> {
        current
            .filter(|_| behind_proxy && !proxy_trouble)
            .and_then(|r| {
                self.traffic()
                    .last_minute(self.app_host().public_address(r.spec.port))
            })
    }

    /// CPU and memory of an app's process tree, as last sampled.
    fn usage_of(&self, pid: Option<u32>) -> (f32, u64) {
        pid.map(|p| self.usage.of(p)).unwrap_or_default()
    }

    /// An instance's ended runs, and its running one as last sampled.
    fn kernel(&self, s: &InstanceStatus) -> (RunTotals, Option<(String, Stats)>) {
        let live = match s.run_counted {
            true => None,
            false => self.usage.kernel_of(&s.tracking.id),
        };
        match live {
            Some(st) => (s.ended_runs.plus(&st), Some((s.tracking.id.clone(), st))),
            None => (s.ended_runs, None),
        }
    }

    /// Each instance of a release with replicas (none without: the deployment's own line
    /// says it all), the first one first.
    fn replica_views(
        &self,
        d: &Deployment,
        first: Option<&InstanceStatus>,
        replicas: &[(InstanceStatus, u16)],
    ) -> Vec<ReplicaView> {
        if replicas.is_empty() {
            return Vec::new();
        }
        let first = first.map(|i| (i.clone(), d.private_port()));
        first
            .into_iter()
            .chain(replicas.iter().map(|(r, p)| (r.clone(), Some(*p))))
            .map(|(s, port)| {
                let (cpu_percent, memory_bytes) = self.usage_of(s.pid);
                ReplicaView {
                    pid: s.pid,
                    private_address: port.map(|p| self.app_host().private_address(p)),
                    state: s.state,
                    restarts: s.restarts,
                    cpu_percent,
                    memory_bytes,
                    kernel: self.kernel(&s).0,
                    last_health: s.last_health.clone(),
                    message: s.message.clone(),
                }
            })
            .collect()
    }
}
