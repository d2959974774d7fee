//! Replicas that follow the load, in `/metrics`: how many instances each deployment runs
//! (set at each scrape) and every scaling the autoscaler made, by direction (`up`, `down`;
//! `blocked`: the node had no room; `failed`: a new replica did not become healthy).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::DeploymentLabel;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    deployment: String,
    direction: String,
}

pub(super) struct ScaleMetrics {
    replicas: Family<DeploymentLabel, Gauge>,
    events: Family<DirectionLabel, Counter>,
}

impl ScaleMetrics {
    pub(super) fn register(registry: &mut Registry) -> ScaleMetrics {
        let replicas = Family::<DeploymentLabel, Gauge>::default();
        let events = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "replicas",
            "Instances of the deployment's current release that run (replicas that follow the load: as scaled)",
            replicas.clone(),
        );
        registry.register(
            "scale_events",
            "Changes of the replica count by the load (direction: up, down; blocked: no room on the node; failed: a new replica did not become healthy)",
            events.clone(),
        );
        ScaleMetrics { replicas, events }
    }

    pub(super) fn clear_present(&self) {
        self.replicas.clear();
    }

    pub(super) fn present(&self, deployment: &str, replicas: u32) {
        self.replicas
            .get_or_create(&DeploymentLabel {
                deployment: deployment.to_string(),
            })
            .set(i64::from(replicas));
    }

    pub(super) fn scaled(&self, deployment: &str, direction: &str) {
        self.events
            .get_or_create(&DirectionLabel {
                deployment: deployment.to_string(),
                direction: direction.to_string(),
            })
            .inc();
    }

    pub(super) fn forget(&self, deployment: &str) {
        for direction in ["up", "down", "blocked", "failed"] {
            self.events.remove(&DirectionLabel {
                deployment: deployment.to_string(),
                direction: direction.to_string(),
            });
        }
    }
}
