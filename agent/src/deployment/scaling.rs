//! Replicas that follow the load: the deployment's side. A replica joins at the end of
//! the list once healthy, and leaves from the end (drained, with the journal naming it
//! until it has stopped), each one transition under the deployment's op lock; the
//! autoscaler's samples and the last scalings (kept in the record) live here too.

use std::sync::Arc;
use std::time::Duration;

use super::{Deployment, OpGuard};
use crate::autoscale::{Sample, ScaleEvent, SCALE_EVENTS_KEPT};
use crate::instance::Instance;
use crate::procstat::ProcId;
use crate::store::{self, Layout};

/// A replica taken out of a deployment for a scale down: its instance, private port and
/// index (1..), to drain and stop.
pub(crate) struct Leaving {
    pub instance: Arc<Instance>,
    pub port: u16,
    pub index: usize,
}

impl Deployment {
    /// The deployment's op lock if no deploy, restart or removal holds it now; `None`
    /// otherwise (or when removed): the autoscaler never waits behind one.
    pub(crate) fn try_begin(&self) -> Option<OpGuard<'_>> {
        let guard = self.op.try_lock().ok()?;
        (!self.state().removed).then_some(OpGuard { _op: guard })
    }

    /// How many instances of the current release run as the record has them (the first
    /// and its replicas); 0 with no current release, when stopped by the user or sleeping.
    pub(crate) fn running_count(&self) -> u32 {
        let s = self.state();
        if s.record.current.is_none() || s.record.stopped || s.record.sleeping {
            return 0;
        }
        1 + s.record.replicas.len() as u32
    }

    /// Keeps `sample` in the autoscaler's window (for `keep`) and says how the load is now:
    /// every sample kept, oldest first.
    pub(crate) fn load_sampled(&self, sample: Sample, keep: Duration) -> Vec<Sample> {
        let mut s = self.state();
        s.load.window.push(sample, keep);
        s.load.window.samples()
    }

    /// The average requests in flight per ready replica over the last few samples (for
    /// `status`), set by the autoscaler; `None` when not autoscaled or not sampled.
    pub(crate) fn set_in_flight_per_replica(&self, v: Option<f64>) {
        self.state().load.per_replica = v;
    }

    pub(crate) fn in_flight_per_replica(&self) -> Option<f64> {
        self.state().load.per_replica
    }

    /// The autoscaler takes the deployment for a scaling: false when one is under way.
    pub(crate) fn begin_scaling(&self) -> bool {
        !std::mem::replace(&mut self.state().load.busy, true)
    }

    /// The scaling is over (whatever it did); its window starts again.
    pub(crate) fn end_scaling(&self) {
        let mut s = self.state();
        s.load.busy = false;
        s.load.window.clear();
    }

    /// A new replica of `release` on `port` is healthy: it joins the end of the list,
    /// instance and record (no longer in the journal's processes in flight). Persisted.
    /// False (nothing changes) when `release` is no longer the current one.
    pub(crate) async fn replica_added(
        &self,
        layout: &Layout,
        release: u32,
        instance: Arc<Instance>,
        port: u16,
    ) -> bool {
        let st = instance.snapshot();
        let id = st.pid.and_then(ProcId::of);
        {
            let mut s = self.state();
            if s.record.current != Some(release) || s.record.stopped {
                return false;
            }
            let index = s.record.replicas.len() + 1;
            s.record
                .journal
                .starting
                .retain(|p| (p.release, p.replica) != (release, index));
            s.record
                .replicas
                .push(store::ReplicaRecord::new(port, id, st.tracking));
            s.replicas.push(instance);
            s.revision += 1;
        }
        self.save_or_log(layout).await;
        true
    }

    /// The last replica leaves: out of the instances and the record, into the journal as
    /// retiring (an agent that stops meanwhile drains and stops it when it starts again).
    /// Persisted. `None` when there is none beyond the first, or a release still retires.
    pub(crate) async fn replica_leaving(&self, layout: &Layout) -> Option<Leaving> {
        let leaving = {
            let mut s = self.state();
            if s.record.journal.retiring.is_some() || s.replicas.is_empty() {
                return None;
            }
            let current = s.record.current_release()?.clone();
            let index = s.record.replicas.len();
            let record = s.record.replicas.pop()?;
            let instance = s.replicas.pop()?;
            let procs = record
                .process()
                .map(|id| crate::journal::Proc::new(current.number, index, id, record.tracking))
                .into_iter()
                .collect();
            let drain = current.spec.drain_timeout.as_secs_f64().ceil() as i64;
            s.record.journal.retiring = Some(crate::journal::Retiring {
                release: current.number,
                procs,
                drain_until: crate::clock::now_unix() + drain,
                kill_timeout_ms: current.spec.kill_timeout.as_millis() as u64,
            });
            s.revision += 1;
            Leaving {
                instance,
                port: record.private_port,
                index,
            }
        };
        self.save_or_log(layout).await;
        Some(leaving)
    }

    /// The replica count changed by the load (or could not): kept with the last ones (at
    /// most [`SCALE_EVENTS_KEPT`]), not in the history of releases. Persisted.
    pub(crate) async fn scaled(&self, layout: &Layout, from: u32, to: u32, text: String) {
        {
            let mut s = self.state();
            s.record.scale_events.push(ScaleEvent {
                at: crate::clock::now_unix(),
                from,
                to,
                text,
            });
            let n = s.record.scale_events.len();
            if n > SCALE_EVENTS_KEPT {
                s.record.scale_events.drain(..n - SCALE_EVENTS_KEPT);
            }
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// Why the autoscaler could not add replicas, said once per reason: true when `why`
    /// is new (to be noted as an event), false when it was the last one said.
    pub(crate) fn blocked(&self, why: Option<String>) -> bool {
        let mut s = self.state();
        let new = why.is_some() && s.load.blocked != why;
        s.load.blocked = why;
        new
    }

    /// The last scalings, oldest first.
    pub(crate) fn scale_events(&self) -> Vec<ScaleEvent> {
        self.state().record.scale_events.clone()
    }
}
