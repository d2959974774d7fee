//! A deployment's other instances (`replicas` > 1): each one's process and private port
//! in the record, its instance beside the first one.

use std::sync::Arc;

use super::Deployment;
use crate::instance::Instance;
use crate::store;
use crate::tracking::Tracking;

impl Deployment {
    /// The current release's other instances (`replicas` > 1).
    pub(crate) fn replicas(&self) -> Vec<Arc<Instance>> {
        self.state().replicas.clone()
    }

    /// The private ports of every instance of the current release, the first one first
    /// (none without the node proxy).
    pub(crate) fn private_ports(&self) -> Vec<u16> {
        let s = self.state();
        s.record
            .private_port
            .into_iter()
            .chain(s.record.replicas.iter().map(|r| r.private_port))
            .collect()
    }

    /// The other processes of the current release as recorded.
    pub(crate) fn recorded_replicas(&self) -> Vec<store::ReplicaRecord> {
        self.state().record.replicas.clone()
    }

    /// Every running process of the app (each instance's first one) and how the others
    /// are found: the instances', or what the record names (apps no instance supervises).
    pub(crate) fn running_apps(&self) -> Vec<(u32, Tracking)> {
        let first = self.running_app();
        let s = self.state();
        let replicas: Vec<(u32, Tracking)> = if s.replicas.is_empty() {
            s.record
                .replicas
                .iter()
                .filter_map(|r| r.pid.map(|p| (p, r.tracking.clone())))
                .collect()
        } else {
            s.replicas
                .iter()
                .filter_map(|i| {
                    let st = i.snapshot();
                    st.pid.map(|p| (p, st.tracking))
                })
                .collect()
        };
        first.into_iter().chain(replicas).collect()
    }
}
