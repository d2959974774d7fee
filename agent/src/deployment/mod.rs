//! One deployment on this node and the only code that changes it: its record (releases, the
//! current one, the process that runs it), its running instance, and the deploy in progress.
//! Every change is a method named for what happens (begin a deploy, commit a release, swap
//! the running instance, stop it for removal, forget the deployment); callers read copies.
//!
//! Two locks, neither held across I/O or `.await`: `state` guards the fields for a moment;
//! `op` (async) is held for the whole of a deploy or remove, so they never interleave.
//! Record writes go through `writer`, an async lock that orders them (the newest wins) and
//! that a removal takes before it deletes the directory.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::instance::Instance;
use crate::procstat::ProcId;
use crate::store::{self, Layout, Record, ReleaseRecord};
use crate::tracking::Tracking;

pub(crate) struct Deployment {
    name: String,
    op: tokio::sync::Mutex<()>,
    state: Mutex<Inner>,
    /// The revision of the record last written.
    writer: tokio::sync::Mutex<u64>,
}

struct Inner {
    record: Record,
    /// Bumped at every change of `record`, so an older copy never overwrites a newer one
    /// (not the record's `generation`, which only changes of what runs bump).
    revision: u64,
    instance: Option<Arc<Instance>>,
    /// The current release's other instances (`replicas` > 1), in the record's order.
    replicas: Vec<Arc<Instance>>,
    deploying: Option<Deploying>,
    /// Deploy requests waiting for their turn (under the op lock), by the client's id.
    queued: Vec<store::DeployRecord>,
    /// Set once removed (or discarded), so a deploy that waited starts over with a new entry.
    removed: bool,
    /// Being removed (or recreated): load balancers are told it is unhealthy while it
    /// still serves.
    draining: bool,
    /// When a load balancer last asked for its health endpoint.
    lb_checked: Option<std::time::Instant>,
    /// Loaded from the store when the agent started, and not recovered yet.
    recover_pending: bool,
    /// Replicas that follow the load: the autoscaler's samples and what it is doing.
    load: crate::autoscale::Load,
    /// Its sleep (beside the record's `sleeping`): a wake in progress, the last failed one.
    sleep: sleep::SleepState,
}

/// The deploy in progress: its release number and the owner it was asked for (a first
/// deploy has no release yet, and its owner already holds the name).
#[derive(Debug, Clone)]
struct Deploying {
    number: u32,
    owner: String,
}

/// Held for the whole of a deploy or a removal.
pub(crate) struct OpGuard<'a> {
    _op: tokio::sync::MutexGuard<'a, ()>,
}

impl Deployment {
    pub(crate) fn new(record: Record) -> Deployment {
        Deployment {
            name: record.name.clone(),
            op: Default::default(),
            state: Mutex::new(Inner {
                record,
                revision: 1,
                instance: None,
                replicas: Vec::new(),
                deploying: None,
                queued: Vec::new(),
                removed: false,
                draining: false,
                lb_checked: None,
                recover_pending: false,
                load: Default::default(),
                sleep: Default::default(),
            }),
            writer: tokio::sync::Mutex::new(0),
        }
    }

    /// A deployment the store had when the agent started: recovered once.
    pub(crate) fn loaded(record: Record) -> Deployment {
        let d = Deployment::new(record);
        d.state().recover_pending = true;
        d
    }

    /// Whether it is still to be recovered (once: true the first time only). A deployment
    /// a deploy made since the agent started is not.
    pub(crate) fn take_recovery(&self) -> bool {
        std::mem::take(&mut self.state().recover_pending)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn state(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for any deploy or removal of this deployment to end. `None` when it was
    /// removed meanwhile (the caller starts over with a fresh entry).
    pub(crate) async fn begin(&self) -> Option<OpGuard<'_>> {
        let guard = self.op.lock().await;
        (!self.state().removed).then_some(OpGuard { _op: guard })
    }

    // --- reading -------------------------------------------------------------------

    /// Who owns it: its current release's owner, else its last one's, else the owner a
    /// first deploy in progress was asked for.
    pub(crate) fn owner(&self) -> Option<String> {
        let s = self.state();
        s.record
            .current_release()
            .or(s.record.releases.last())
            .map(|r| r.spec.owner.clone())
            .or_else(|| s.deploying.as_ref().map(|d| d.owner.clone()))
    }

    pub(crate) fn current(&self) -> Option<ReleaseRecord> {
        self.state().record.current_release().cloned()
    }

    /// Every release it keeps, oldest first (for `deployctl state rebuild`).
    pub(crate) fn releases(&self) -> Vec<ReleaseRecord> {
        self.state().record.releases.clone()
    }

    /// A copy of the record.
    pub(crate) fn record(&self) -> Record {
        self.state().record.clone()
    }

    pub(crate) fn has_releases(&self) -> bool {
        !self.state().record.releases.is_empty()
    }

    pub(crate) fn instance(&self) -> Option<Arc<Instance>> {
        self.state().instance.clone()
    }

    /// The private port of the current release's instance (behind the node proxy).
    pub(crate) fn private_port(&self) -> Option<u16> {
        self.state().record.private_port
    }

    /// The process the record names, its release and how its instance is tracked.
    pub(crate) fn recorded_process(&self) -> Option<(ProcId, u32, Tracking)> {
        let s = self.state();
        s.record
            .process()
            .map(|(id, release)| (id, release, s.record.tracking.clone()))
    }

    /// The running app's first process and how its others are found: the instance's, or
    /// what the record names (an app no instance supervises yet).
    pub(crate) fn running_app(&self) -> Option<(u32, Tracking)> {
        let s = self.state();
        match s.instance.as_ref().map(|i| i.snapshot()) {
            Some(st) if st.pid.is_some() => st.pid.map(|p| (p, st.tracking)),
            _ => s.record.pid.map(|p| (p, s.record.tracking.clone())),
        }
    }

    // --- transitions ---------------------------------------------------------------

    /// A deploy begins (under [`Deployment::begin`]): the number its release gets.
    pub(crate) fn begin_deploy(&self, owner: &str) -> u32 {
        let mut s = self.state();
        let number = s.record.next_release();
        // A sleeping deployment sleeps again once the new release is live and checked.
        s.sleep.sleep_soon = s.record.sleeping;
        s.deploying = Some(Deploying {
            number,
            owner: owner.to_string(),
        });
        number
    }

    /// The deploy in progress is over (whatever its result).
    pub(crate) fn end_deploy(&self) {
        self.state().deploying = None;
    }

    /// A release became healthy: it is the current one, run by `id` (on `private_port`
    /// behind the node proxy, if it has one) and by `replicas` (the record only: see
    /// [`Deployment::go_live`]).
    #[cfg(test)]
    fn commit(
        &self,
        release: ReleaseRecord,
        id: Option<ProcId>,
        tracking: Tracking,
        private_port: Option<u16>,
        replicas: Vec<store::ReplicaRecord>,
    ) {
        self.state()
            .commit(release, id, tracking, private_port, replicas);
    }

    /// A release failed: kept in the history of a deployment that has a current release
    /// (a first deploy that fails leaves nothing behind).
    #[cfg(test)]
    fn record_failure(&self, release: ReleaseRecord) {
        let mut s = self.state();
        if s.record.current.is_some() {
            s.record.releases.push(release);
            s.revision += 1;
        }
    }

    /// Remembers the process now running `release` (or none).
    #[cfg(test)]
    fn set_process(&self, release: u32, id: Option<ProcId>, tracking: Tracking) {
        let mut s = self.state();
        s.record.set_process(release, id, tracking);
        s.revision += 1;
    }

    /// Instance `replica` (0: the first, 1..: the replicas), on `private_port` behind the
    /// node proxy if it has one, (re)started a process of `release`. An instance of the
    /// current release where the record has it is recorded as running it (a different
    /// process than the record names); any other (a release or restart in flight) goes in
    /// the journal, for an agent that starts again to stop. Whether anything changed.
    pub(crate) fn process_started(
        &self,
        release: u32,
        replica: usize,
        private_port: Option<u16>,
        id: ProcId,
        tracking: &Tracking,
    ) -> bool {
        let mut s = self.state();
        let recorded_port = match replica {
            0 => Some(s.record.private_port),
            n => s.record.replicas.get(n - 1).map(|r| Some(r.private_port)),
        };
        if s.record.current != Some(release) || recorded_port != Some(private_port) {
            // A release being deployed is recorded when its deploy commits; meanwhile its
            // processes are the deploy's, and (with a restart's, beside the current one)
            // the journal's: stopped if the agent restarts before it goes live.
            let mut changed = false;
            if s.record.current != Some(release) {
                changed |= s.deploy_process_started(release, id, tracking);
            }
            let p = crate::journal::Proc::new(release, replica, id, tracking.clone());
            let starting = &mut s.record.journal.starting;
            if !starting.contains(&p) {
                // A restart (by its policy) of an instance in flight replaces its process.
                starting.retain(|q| (q.release, q.replica) != (release, replica));
                starting.push(p);
                s.revision += 1;
                changed = true;
            }
            return changed;
        }
        if replica == 0 {
            if s.record.process().map(|p| p.0) == Some(id) {
                return false;
            }
            s.record.set_process(release, Some(id), tracking.clone());
        } else {
            let Some(r) = s.record.replicas.get_mut(replica - 1) else {
                return false;
            };
            if r.process() == Some(id) {
                return false;
            }
            *r = store::ReplicaRecord::new(r.private_port, Some(id), tracking.clone());
        }
        s.revision += 1;
        true
    }

    /// What a deploy or restart has in flight, as recorded.
    pub(crate) fn journal(&self) -> crate::journal::Journal {
        self.state().record.journal.clone()
    }

    /// Stopped by the user (`deployctl stop`): it stays stopped across agent restarts.
    pub(crate) fn is_stopped(&self) -> bool {
        self.state().record.stopped
    }

    /// Marks a deployment that never had a release (its first deploy failed) as removed;
    /// false (and nothing changes) when it has a release or runs something.
    pub(crate) fn discard_if_unreleased(&self) -> bool {
        let mut s = self.state();
        if s.record.current.is_some() || s.instance.is_some() || !s.replicas.is_empty() {
            return false;
        }
        s.removed = true;
        true
    }

    /// Forgets it: no record write happens after this, and its directory (record,
    /// releases, logs) is deleted once a write in progress is over.
    pub(crate) async fn forget(
        &self,
        layout: &Layout,
        keep: &'static [&'static str],
    ) -> Result<()> {
        self.state().removed = true;
        let _writer = self.writer.lock().await;
        store::delete(layout, &self.name, keep).await
    }

    /// Writes the record as it is now (a newer write that already happened wins). A
    /// removed deployment is not written back.
    pub(crate) async fn save(&self, layout: &Layout) -> Result<()> {
        let mut written = self.writer.lock().await;
        let (record, revision) = {
            let s = self.state();
            if s.removed || s.revision <= *written {
                return Ok(());
            }
            (s.record.clone(), s.revision)
        };
        store::save(layout, record).await?;
        *written = revision;
        Ok(())
    }

    /// [`Deployment::save`], logging a failure (what asked for it goes on regardless).
    pub(crate) async fn save_or_log(&self, layout: &Layout) {
        if let Err(e) = self.save(layout).await {
            tracing::error!(deployment = %self.name, error = %e, "cannot save record");
        }
    }
}

impl Inner {
    /// The record's side of a release going live.
    fn commit(
        &mut self,
        mut release: ReleaseRecord,
        id: Option<ProcId>,
        tracking: Tracking,
        private_port: Option<u16>,
        replicas: Vec<store::ReplicaRecord>,
    ) {
        release.result = store::ReleaseResult::Ok;
        self.record.current = Some(release.number);
        self.record.set_process(release.number, id, tracking);
        self.record.private_port = private_port;
        self.record.replicas = replicas;
        self.record.stopped = false;
        self.record.sleeping = false;
        // A restart (or start) runs the same release again: its entry is updated.
        match self
            .record
            .releases
            .iter_mut()
            .find(|r| r.number == release.number)
        {
            Some(same) => *same = release,
            None => self.record.releases.push(release),
        }
        self.revision += 1;
    }
}

mod deploys;
mod draining;
mod events;
mod identity;
mod kept;
mod removal;
mod replicas;
mod scaling;
mod sleep;
mod snapshot;
mod transitions;

pub(crate) use deploys::Ended;
pub(crate) use removal::ToStop;
pub(crate) use snapshot::Snapshot;
pub(crate) use transitions::{Failure, Live};
#[cfg(test)]
mod deploy_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod transition_tests;
