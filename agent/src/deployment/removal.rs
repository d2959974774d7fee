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
        let instances = std::mem::take(&mut s.replicas);
        let recorded = std::mem::take(&mut s.record.replicas);
        let replicas: Vec<ToStop> = if instances.is_empty() {
            recorded
                .iter()
                .filter_map(|r| {
                    r.process().map(|id| ToStop::Recorded {
                        id,
                        tracking: r.tracking.clone(),
                        grace,
                    })
                })
                .collect()
        } else {
            instances.into_iter().map(ToStop::Instance).collect()
        };
        drop(s);
        std::iter::once(self.stop_first_for_removal())
            .chain(replicas)
            .collect()
    }

    fn stop_first_for_removal(&self) -> ToStop {
        let mut s = self.state();
        let grace = s
            .record
            .current_release()
            .map(|r| r.spec.kill_timeout)
            .unwrap_or(DEFAULT_KILL_TIMEOUT);
        let recorded = s.record.process().map(|p| (p.0, s.record.tracking.clone()));
        s.record.set_process(0, None, Tracking::default());
        s.generation += 1;
        match (s.instance.take(), recorded) {
            (Some(i), _) => ToStop::Instance(i),
            (None, Some((id, tracking))) => ToStop::Recorded {
                id,
                tracking,
                grace,
            },
            (None, None) => ToStop::Nothing,
        }
    }
}
