//! `/metrics`: the agent's Prometheus metrics (OpenMetrics text, with prometheus-client;
//! [`crate::exposition`] serves it as the Prometheus text format 0.0.4 too).
//!
//! Events are recorded as they happen (health checks, deploy steps, restarts); the figures
//! that describe the present (deployments by state, each app's CPU and memory) are set from
//! the supervisor's cached state when scraped.

mod scale;
mod sleep;
mod traffic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) use traffic::Served;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeploymentLabel {
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: String,
    result: String,
}

/// One deployment's present figures, as the supervisor sees them at scrape time.
pub(crate) struct Present {
    pub deployment: String,
    pub state: &'static str,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    /// Each instance's memory limit, when it has one.
    pub memory_limit: Option<u64>,
    /// The running instances' groups as last sampled, by instance id.
    pub live_runs: Vec<(String, crate::limits::Stats)>,
    /// How many instances of its current release run.
    pub replicas: u32,
}

/// How long the figures last seen of an instance that no longer runs are kept (so that a
/// late sample of it is not counted again).
const SEEN_FOR: Duration = Duration::from_secs(600);

/// The kernel's figures last counted of one instance (they only grow while it runs).
#[derive(Default)]
struct Seen {
    oom_kills: u64,
    throttled_periods: u64,
    throttled_usec: u64,
    at: Option<Instant>,
}

pub(crate) struct Metrics {
    registry: Registry,
    health_latency: Family<DeploymentLabel, Histogram>,
    step_duration: Family<StepLabel, Histogram>,
    restarts: Family<DeploymentLabel, Counter>,
    by_state: Family<StateLabel, Gauge>,
    healthy: Family<DeploymentLabel, Gauge>,
    cpu: Family<DeploymentLabel, Gauge<f64, AtomicU64>>,
    memory: Family<DeploymentLabel, Gauge>,
    memory_limit: Family<DeploymentLabel, Gauge>,
    /// Running totals over every instance of the deployment (each instance's groups start
    /// at 0): OOM kills, CPU throttling.
    oom_kills: Family<DeploymentLabel, Counter>,
    throttled_periods: Family<DeploymentLabel, Counter>,
    throttled_seconds: Family<DeploymentLabel, Counter<f64, AtomicU64>>,
    /// Instance id -> what was counted of it so far.
    seen: Mutex<HashMap<String, Seen>>,
    /// The node proxy's counts, set at each scrape.
    traffic: Arc<traffic::TrafficCollector>,
    /// Replicas that follow the load: counts and scalings.
    scale: scale::ScaleMetrics,
    /// One scrape at a time: a scrape clears and refills the present-time families.
    scrape: Mutex<()>,
    sleep: sleep::SleepMetrics,
}

fn health_histogram() -> Histogram {
    // 0.5 ms .. ~4 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

fn step_histogram() -> Histogram {
    // 1 ms .. ~1 h
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric family, registered with its help text. Long on purpose: one family after
    /// another, in the order `/metrics` lists them.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("deploy_agent");
        let health_latency = Family::<DeploymentLabel, Histogram>::new_with_constructor(
            health_histogram as fn() -> Histogram,
        );
        let step_duration = Family::<StepLabel, Histogram>::new_with_constructor(
            step_histogram as fn() -> Histogram,
        );
        let restarts = Family::<DeploymentLabel, Counter>::default();
        let by_state = Family::<StateLabel, Gauge>::default();
        let healthy = Family::<DeploymentLabel, Gauge>::default();
        let cpu = Family::<DeploymentLabel, Gauge<f64, AtomicU64>>::default();
        let memory = Family::<DeploymentLabel, Gauge>::default();
        let memory_limit = Family::<DeploymentLabel, Gauge>::default();
        let oom_kills = Family::<DeploymentLabel, Counter>::default();
        let throttled_periods = Family::<DeploymentLabel, Counter>::default();
        let throttled_seconds = Family::<DeploymentLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "deployments",
            "Deployments on this node by state",
            by_state.clone(),
        );
        registry.register(
            "deployment_healthy",
            "1 while the deployment is healthy, else 0",
            healthy.clone(),
        );
        registry.register(
            "app_restarts",
            "Restarts of the app by its restart policy since the agent started",
            restarts.clone(),
        );
        registry.register(
            "health_check_duration_seconds",
            "How long the agent's health checks of each app took",
            health_latency.clone(),
        );
        registry.register(
            "deploy_step_duration_seconds",
            "How long each deploy step took (result: ok or failed)",
            step_duration.clone(),
        );
        registry.register(
            "app_cpu_percent",
            "CPU use of the app's processes (100 = one core)",
            cpu.clone(),
        );
        registry.register(
            "app_memory_bytes",
            "Resident memory of the app's processes",
            memory.clone(),
        );
        registry.register(
            "app_memory_limit_bytes",
            "Memory limit of each instance of the app (set only when it has one)",
            memory_limit.clone(),
        );
        registry.register(
            "app_oom_kills",
            "Processes of the app the kernel killed at its memory limit (OOM kills)",
            oom_kills.clone(),
        );
        registry.register(
            "app_cpu_throttled_periods",
            "CPU scheduler periods in which the app used its whole CPU quota",
            throttled_periods.clone(),
        );
        registry.register(
            "app_cpu_throttled_seconds",
            "Time the app's processes were held back by its CPU quota",
            throttled_seconds.clone(),
        );
        let scale = scale::ScaleMetrics::register(&mut registry);
        let sleep = sleep::SleepMetrics::register(&mut registry);
        let traffic = Arc::new(traffic::TrafficCollector::default());
        registry.register_collector(Box::new(traffic.clone()));
        Metrics {
            scale,
            traffic,
            registry,
            health_latency,
            step_duration,
            restarts,
            by_state,
            healthy,
            cpu,
            memory,
            memory_limit,
            oom_kills,
            throttled_periods,
            throttled_seconds,
            seen: Mutex::new(HashMap::new()),
            scrape: Mutex::new(()),
            sleep,
        }
    }

    fn label(deployment: &str) -> DeploymentLabel {
        DeploymentLabel {
            deployment: deployment.to_string(),
        }
    }

    pub(crate) fn health_checked(&self, deployment: &str, latency: Duration) {
        self.health_latency
            .get_or_create(&Self::label(deployment))
            .observe(latency.as_secs_f64());
    }

    pub(crate) fn restarted(&self, deployment: &str) {
        self.restarts.get_or_create(&Self::label(deployment)).inc();
    }

    /// The autoscaler changed `deployment`'s replica count (`direction`: up, down), or
    /// could not (blocked, failed).
    pub(crate) fn scaled(&self, deployment: &str, direction: &str) {
        self.scale.scaled(deployment, direction);
    }

    pub(crate) fn step_finished(&self, step: &str, ok: bool, took: Duration) {
        let label = StepLabel {
            step: step.to_string(),
            result: if ok { "ok" } else { "failed" }.to_string(),
        };
        self.step_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// What the kernel says of an instance of `deployment` (`id`) now: what grew since it
    /// was last counted is added to the deployment's running totals. Called with each
    /// sample of a running instance and with the last figures of a run that ended.
    pub(crate) fn kernel(&self, deployment: &str, id: &str, s: &crate::limits::Stats) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let e = seen.entry(id.to_string()).or_default();
        let oom = s.oom_kills.saturating_sub(e.oom_kills);
        let periods = s.throttled_periods.saturating_sub(e.throttled_periods);
        let usec = s.throttled_usec.saturating_sub(e.throttled_usec);
        e.oom_kills = e.oom_kills.max(s.oom_kills);
        e.throttled_periods = e.throttled_periods.max(s.throttled_periods);
        e.throttled_usec = e.throttled_usec.max(s.throttled_usec);
        e.at = Some(Instant::now());
        drop(seen);
        let label = Self::label(deployment);
        self.oom_kills.get_or_create(&label).inc_by(oom);
        self.throttled_periods.get_or_create(&label).inc_by(periods);
        self.throttled_seconds
            .get_or_create(&label)
            .inc_by(usec as f64 / 1e6);
    }

    /// A deployment was put to sleep.
    pub(crate) fn fell_asleep(&self, deployment: &str) {
        self.sleep.fell_asleep(&Self::label(deployment));
    }

    /// A request woke a deployment; the wake took `took`.
    pub(crate) fn woke(&self, deployment: &str, took: Duration) {
        self.sleep.woke(&Self::label(deployment), took);
    }

    /// Forgets a removed deployment's series.
    pub(crate) fn forget(&self, deployment: &str) {
        let label = Self::label(deployment);
        self.sleep.forget(&label);
        self.health_latency.remove(&label);
        self.restarts.remove(&label);
        self.oom_kills.remove(&label);
        self.throttled_periods.remove(&label);
        self.throttled_seconds.remove(&label);
        self.scale.forget(deployment);
    }

    /// The metrics as OpenMetrics text, with the present-time figures from `present` and
    /// the node proxy's counts from `served`.
    pub(crate) fn encode(&self, present: &[Present], served: Vec<Served>) -> String {
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        *self
            .traffic
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = served;
        self.by_state.clear();
        self.healthy.clear();
        self.cpu.clear();
        self.memory.clear();
        self.memory_limit.clear();
        self.scale.clear_present();
        let live: std::collections::HashSet<&str> = present
            .iter()
            .flat_map(|p| p.live_runs.iter().map(|(id, _)| id.as_str()))
            .collect();
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, e| {
                live.contains(id.as_str()) || e.at.is_some_and(|t| t.elapsed() < SEEN_FOR)
            });
        self.sleep.set_states(present);
        for state in crate::instance::State::ALL {
            self.by_state
                .get_or_create(&StateLabel {
                    state: state.as_str().to_string(),
                })
                .set(0);
        }
        for p in present {
            self.by_state
                .get_or_create(&StateLabel {
                    state: p.state.to_string(),
                })
                .inc();
            let label = Self::label(&p.deployment);
            // Present at 0 before the first restart, so alerts on it see every deployment.
            let _ = self.restarts.get_or_create(&label).get();
            for (id, stats) in &p.live_runs {
                self.kernel(&p.deployment, id, stats);
            }
            let _ = self.oom_kills.get_or_create(&label).get();
            let _ = self.throttled_periods.get_or_create(&label).get();
            let _ = self.throttled_seconds.get_or_create(&label).get();
            if let Some(limit) = p.memory_limit {
                self.memory_limit
                    .get_or_create(&label)
                    .set(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            self.healthy
                .get_or_create(&label)
                .set(i64::from(p.state == "healthy"));
            self.cpu.get_or_create(&label).set(f64::from(p.cpu_percent));
            self.memory
                .get_or_create(&label)
                .set(i64::try_from(p.memory_bytes).unwrap_or(i64::MAX));
            self.scale.present(&p.deployment, p.replicas);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests;
