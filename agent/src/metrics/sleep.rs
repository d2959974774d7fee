//! The metrics of sleep and wake: each deployment's state (1 for the state it is in, so a
//! sleeping one is visible as such), how often it fell asleep and woke, and how long its
//! wakes took (a request's wait).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{DeploymentLabel, Present};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentState {
    deployment: String,
    state: String,
}

pub(super) struct SleepMetrics {
    state: Family<DeploymentState, Gauge>,
    sleeps: Family<DeploymentLabel, Counter>,
    wakes: Family<DeploymentLabel, Counter>,
    wake_duration: Family<DeploymentLabel, Histogram>,
}

fn wake_histogram() -> Histogram {
    // 50 ms .. ~7 min
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

impl SleepMetrics {
    pub(super) fn register(registry: &mut Registry) -> SleepMetrics {
        let m = SleepMetrics {
            state: Family::default(),
            sleeps: Family::default(),
            wakes: Family::default(),
            wake_duration: Family::new_with_constructor(wake_histogram as fn() -> Histogram),
        };
        registry.register(
            "deployment_state",
            "1 for the state each deployment is in (healthy, sleeping, waking, ...)",
            m.state.clone(),
        );
        registry.register(
            "sleeps",
            "Times the deployment was put to sleep for want of requests (idle_timeout, or replicas min 0)",
            m.sleeps.clone(),
        );
        registry.register(
            "wakes",
            "Times a request woke the sleeping deployment",
            m.wakes.clone(),
        );
        registry.register(
            "wake_duration_seconds",
            "How long a wake took, from the request that asked for it to the app ready",
            m.wake_duration.clone(),
        );
        m
    }

    pub(super) fn fell_asleep(&self, label: &DeploymentLabel) {
        self.sleeps.get_or_create(label).inc();
    }

    pub(super) fn woke(&self, label: &DeploymentLabel, took: std::time::Duration) {
        self.wakes.get_or_create(label).inc();
        self.wake_duration
            .get_or_create(label)
            .observe(took.as_secs_f64());
    }

    /// At a scrape: each deployment's state now.
    pub(super) fn set_states(&self, present: &[Present]) {
        self.state.clear();
        for p in present {
            self.state
                .get_or_create(&DeploymentState {
                    deployment: p.deployment.clone(),
                    state: p.state.to_string(),
                })
                .set(1);
        }
    }

    pub(super) fn forget(&self, label: &DeploymentLabel) {
        self.sleeps.remove(label);
        self.wakes.remove(label);
        self.wake_duration.remove(label);
    }
}
