//! What an instance of a deployment tells the rest of the agent: the processes it starts
//! (recorded, for re-adoption), its restarts and their reasons (the record's last event),
//! its health checks and runs (metrics), a port another user took.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::deployment::Deployment;
use crate::instance::Observer;
use crate::metrics::Metrics;
use crate::procstat::ProcId;
use crate::store::Layout;
use crate::tracking::Tracking;

/// Keeps a deployment's record and the metrics up to date with what its instance does.
pub(super) struct DeploymentObserver {
    pub(super) deployment: Weak<Deployment>,
    pub(super) replica: usize,
    /// Where the instance listens behind the node proxy, if it does.
    pub(super) private_port: Option<u16>,
    pub(super) layout: Layout,
    pub(super) metrics: Arc<Metrics>,
    pub(super) port_taken: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    /// Where a change of the instance's traffic goes ([`super::follow_health`]).
    pub(super) health_changes: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Observer for DeploymentObserver {
    fn started(&self, release: u32, id: ProcId, tracking: &Tracking) {
        let Some(d) = self.deployment.upgrade() else {
            return;
        };
        if d.process_started(release, self.replica, self.private_port, id, tracking) {
            let layout = self.layout.clone();
            // Off the instance's task: the write is fsynced.
            tokio::spawn(async move { d.save_or_log(&layout).await });
        }
    }

    fn restarted(&self) {
        if let Some(d) = self.deployment.upgrade() {
            self.metrics.restarted(d.name());
        }
    }

    fn port_taken(&self, why: &str) {
        if let Some(d) = self.deployment.upgrade() {
            tracing::warn!(deployment = %d.name(), "{why}");
            let why = "another user's process holds its private port".to_string();
            let _ = self.port_taken.send((d.name().to_string(), why));
        }
    }

    fn checked(&self, latency: Duration, _healthy: bool) {
        if let Some(d) = self.deployment.upgrade() {
            self.metrics.health_checked(d.name(), latency);
        }
    }

    fn traffic(&self, _in_traffic: bool) {
        if let Some(d) = self.deployment.upgrade() {
            let _ = self.health_changes.send(d.name().to_string());
        }
    }

    fn event(&self, text: &str) {
        let Some(d) = self.deployment.upgrade() else {
            return;
        };
        match self.replica {
            0 => d.note_event(text),
            n => d.note_event(format!("replica {}: {text}", n + 1)),
        }
        let layout = self.layout.clone();
        // Off the instance's task: the write is fsynced.
        tokio::spawn(async move { d.save_or_log(&layout).await });
    }

    fn ran(&self, tracking: &Tracking, stats: &crate::limits::Stats) {
        if let Some(d) = self.deployment.upgrade() {
            self.metrics.kernel(d.name(), &tracking.id, stats);
        }
    }
}
