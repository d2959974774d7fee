//! What a removal takes out of a deployment to stop: its first instance (or the process
//! an earlier agent run left), then every replica's.

use std::sync::Arc;
use std::time::Duration;

use super::Deployment;
use crate::instance::Instance;
use crate::procstat::ProcId;
use crate::spec::DEFAULT_KILL_TIMEOUT;
use crate::tracking::Tracking;

/// What a removal has to stop: the instance, or a process an earlier agent run left.
pub(crate) enum ToStop {
    Instance(Arc<Instance>),
    Recorded {
        id: ProcId,
        tracking: Tracking,
        grace: Duration,
    },
    Nothing,
}

impl Deployment {
    /// Removal begins (under [`Deployment::begin`]): takes what runs out of the deployment,
    /// for the caller to stop: the first instance (or process), then every replica's.
    pub(crate) fn stop_for_removal(&self) -> Vec<ToStop> {
        let mut s = self.state();
        let grace = s
            .record
            .current_release()
            .map(|r| r.spec.kill_timeout)
            .unwrap_or(DEFAULT_KILL_TIMEOUT);
        let recorded = |id: Option<ProcId>, tracking: &Tracking| match id {
            Some(id) => ToStop::Recorded {
                id,
                tracking: tracking.clone(),
                grace,
            },
            None => ToStop::Nothing,
        };
        // What no instance supervises (an earlier agent run's) is stopped by its record.
        let first = match s.instance.take() {
            Some(i) => ToStop::Instance(i),
            None => recorded(s.record.process().map(|p| p.0), &s.record.tracking),
        };
        s.record.set_process(0, None, Tracking::default());
        let instances = std::mem::take(&mut s.replicas);
        let records = std::mem::take(&mut s.record.replicas);
        s.revision += 1;
        let replicas: Vec<ToStop> = if instances.is_empty() {
            records
                .iter()
                .map(|r| recorded(r.process(), &r.tracking))
                .filter(|t| !matches!(t, ToStop::Nothing))
                .collect()
        } else {
            instances.into_iter().map(ToStop::Instance).collect()
        };
        std::iter::once(first).chain(replicas).collect()
    }
}
