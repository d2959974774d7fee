//! The whole transitions of a deployment, each one method that changes its instances and
//! its record under one taking of the lock and, where the record changed, persists it:
//! an observer never sees a new instance under the old record, or the reverse.

use std::sync::Arc;
use std::time::Duration;

use super::Deployment;
use crate::instance::Instance;
use crate::procstat::ProcId;
use crate::store::{self, FailedDeploy, Layout, ReleaseRecord};

/// A release that became healthy (and took the traffic), as it goes live.
pub(crate) struct Live {
    pub release: ReleaseRecord,
    pub instance: Arc<Instance>,
    /// Its first process.
    pub pid: u32,
    /// Where its first instance listens behind the node proxy (`strategy: switch`).
    pub private_port: Option<u16>,
    /// Its other instances (`replicas` > 1), each on its private port.
    pub replicas: Vec<(Arc<Instance>, u16)>,
    /// Its last event ("release 3 deployed (v2 0112ce2c5d)").
    pub event: String,
}

/// Why a deploy or a restart failed, as the last event says it.
pub(crate) enum Failure {
    /// A deploy of release `number` failed at `step` (`reason`: its first line).
    Deploy {
        number: u32,
        step: String,
        reason: String,
        text: String,
    },
    /// A restart (or start) of the current release failed.
    Restart { text: String },
}

impl Deployment {
    /// A release goes live: it is the deployment's instance, replicas and current release,
    /// with its process, private ports and last event, all in one change; then persisted.
    pub(crate) async fn go_live(&self, layout: &Layout, live: Live) {
        // The instances' own state first: never under the deployment's lock.
        let tracking = live.instance.snapshot().tracking;
        let replicas: Vec<store::ReplicaRecord> = live
            .replicas
            .iter()
            .map(|(r, port)| {
                let st = r.snapshot();
                store::ReplicaRecord::new(*port, st.pid.and_then(ProcId::of), st.tracking)
            })
            .collect();
        let new_ids: Vec<ProcId> = ProcId::of(live.pid)
            .into_iter()
            .chain(
                replicas
                    .iter()
                    .filter_map(|r: &store::ReplicaRecord| r.process()),
            )
            .collect();
        {
            let mut s = self.state();
            // What served before drains now: an agent that starts again finishes that.
            s.record.journal.retiring = retiring(&s.record, &new_ids);
            s.record.journal.starting.clear();
            s.instance = Some(live.instance);
            s.replicas = live.replicas.into_iter().map(|(r, _)| r).collect();
            let number = live.release.number;
            let id = ProcId::of(live.pid);
            s.commit(live.release, id, tracking, live.private_port, replicas);
            s.record.last_event = Some(store::NodeEvent {
                at: crate::clock::now_unix(),
                text: live.event,
            });
            // A deploy that failed before it is history now.
            if s.record
                .failed_deploy
                .as_ref()
                .is_some_and(|f| f.release <= number)
            {
                s.record.failed_deploy = None;
            }
            // What runs changed: a deploy based on what ran before is stale now.
            s.record.generation += 1;
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// Release `number` took the traffic and the release it replaced took `took` to finish
    /// its requests: recorded and persisted.
    pub(crate) async fn previous_drained(&self, layout: &Layout, number: u32, took: Duration) {
        {
            let mut s = self.state();
            let Some(r) = s
                .record
                .releases
                .iter_mut()
                .rev()
                .find(|r| r.number == number)
            else {
                return;
            };
            r.previous_drained_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// The new release is the deployment's from its start (nothing served beside it, or
    /// what did stopped for the port); the instance it replaces is returned.
    pub(crate) fn serve_from_start(&self, new: Arc<Instance>) -> Option<Arc<Instance>> {
        self.state().instance.replace(new)
    }

    /// The previous release stopped to free the port the new one needs: nothing serves.
    pub(crate) fn stopped_for_port(&self) -> Option<Arc<Instance>> {
        self.state().instance.take()
    }

    /// A new release that was the deployment's from its start did not make it: `previous`
    /// is its instance again (none when it was stopped for the port).
    pub(crate) fn start_undone(&self, previous: Option<Arc<Instance>>) {
        self.state().instance = previous;
    }

    /// The deployment leaves the node proxy (or a kept release is routed again without its
    /// replicas): the replicas are taken out, instances and record, for the caller to stop.
    pub(crate) fn take_replicas(&self) -> Vec<Arc<Instance>> {
        let mut s = self.state();
        if !s.record.replicas.is_empty() {
            s.record.replicas.clear();
            s.revision += 1;
        }
        std::mem::take(&mut s.replicas)
    }

    /// The kept release (after a failed deploy or restart) runs again as `pid`.
    pub(crate) fn kept_running(&self, release: u32, pid: u32, instance: &Instance) {
        let tracking = instance.snapshot().tracking;
        let mut s = self.state();
        s.record.set_process(release, ProcId::of(pid), tracking);
        s.revision += 1;
    }

    /// A deploy or a restart failed while a current release is kept: the failed release
    /// (if it got that far) joins the history, the failure is the last event; persisted.
    /// A deployment with no current release (a failed first deploy) is left as it is: it
    /// is discarded.
    pub(crate) async fn failed(
        &self,
        layout: &Layout,
        release: Option<ReleaseRecord>,
        failure: Failure,
    ) {
        {
            let mut s = self.state();
            if s.record.current.is_none() {
                return;
            }
            if let Some(r) = release {
                s.record.releases.push(r);
            }
            let now = crate::clock::now_unix();
            let text = match failure {
                Failure::Deploy {
                    number,
                    step,
                    reason,
                    text,
                } => {
                    s.record.failed_deploy = Some(FailedDeploy {
                        at: now,
                        release: number,
                        step,
                        reason,
                    });
                    text
                }
                Failure::Restart { text } => text,
            };
            s.record.last_event = Some(store::NodeEvent { at: now, text });
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// After an agent restart: the current release's first instance is `instance` (adopted
    /// as it runs, or `restarted`: its recorded process is gone and a new one starts).
    pub(crate) fn recovered(&self, instance: Arc<Instance>, restarted: Option<u32>) {
        let mut s = self.state();
        if let Some(release) = restarted {
            s.record.set_process(release, None, Default::default());
            s.revision += 1;
        }
        s.instance = Some(instance);
    }

    /// After an agent restart: the replicas, each adopted or started again (`restarted`:
    /// their indexes, 1.., whose recorded processes are gone).
    pub(crate) fn replicas_recovered(&self, instances: Vec<Arc<Instance>>, restarted: &[usize]) {
        let mut s = self.state();
        for index in restarted {
            if let Some(r) = index
                .checked_sub(1)
                .and_then(|i| s.record.replicas.get_mut(i))
            {
                *r = store::ReplicaRecord::new(r.private_port, None, Default::default());
                s.revision += 1;
            }
        }
        s.replicas = instances;
    }

    /// A release that did not go live was stopped (or, after an agent restart, found and
    /// stopped): the journal's processes in flight are gone. Persisted.
    pub(crate) async fn start_abandoned(&self, layout: &Layout) {
        {
            let mut s = self.state();
            if s.record.journal.starting.is_empty() {
                return;
            }
            s.record.journal.starting.clear();
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// The release switched away from has drained and stopped. Persisted.
    pub(crate) async fn retired(&self, layout: &Layout) {
        {
            let mut s = self.state();
            if s.record.journal.retiring.take().is_none() {
                return;
            }
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// Stopped by the user (`deployctl stop`), after its processes were taken out: it stays
    /// stopped across agent restarts. Persisted.
    pub(crate) async fn stopped_by_user(&self, layout: &Layout) -> crate::error::Result<()> {
        {
            let mut s = self.state();
            s.record.stopped = true;
            s.record.sleeping = false;
            s.record.private_port = None;
            s.record.generation += 1;
            s.revision += 1;
        }
        self.save(layout).await
    }
}

/// The current release's processes (other than `new`, the release going live), to drain and
/// stop once it is switched away from.
fn retiring(record: &store::Record, new: &[ProcId]) -> Option<crate::journal::Retiring> {
    let current = record.current_release()?;
    let first = record
        .process()
        .map(|(id, release)| (0, id, release, record.tracking.clone()));
    let others = record.replicas.iter().enumerate().filter_map(|(i, r)| {
        r.process()
            .map(|id| (i + 1, id, current.number, r.tracking.clone()))
    });
    let procs: Vec<crate::journal::Proc> = first
        .into_iter()
        .chain(others)
        .filter(|(_, id, _, _)| !new.contains(id))
        .map(|(replica, id, release, tracking)| {
            crate::journal::Proc::new(release, replica, id, tracking)
        })
        .collect();
    let drain = current.spec.drain_timeout.as_secs_f64().ceil() as i64;
    (!procs.is_empty()).then(|| crate::journal::Retiring {
        release: current.number,
        procs,
        drain_until: crate::clock::now_unix() + drain,
        kill_timeout_ms: current.spec.kill_timeout.as_millis() as u64,
    })
}
