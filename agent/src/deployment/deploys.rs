//! The deploys a deployment took, by the client's deploy ids, as its record keeps them
//! (`status` reports them as `recent_deploys`: a client that lost a deploy's stream learns
//! how it ended), and its generation: what a client's deploy is based on.
//!
//! A deploy in progress is written to the record when it begins, when its release is
//! prepared and when its processes start, so an agent that stopped during it (`kill -9`)
//! knows afterwards that it was interrupted, at which step, and which processes to stop.

use super::{Deployment, Inner};
use crate::procstat::ProcId;
use crate::store::{self, DeployRecord, Layout, ReleaseRecord, StartedProcess, DEPLOYS_KEPT};
use crate::tracking::Tracking;

/// What a status reports for a deploy that has not ended (or waits for its turn).
pub(crate) const IN_PROGRESS: &str = "in progress";

/// How a deploy ended, as its record keeps it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ended {
    /// The release it made (or would have made); 0: none.
    pub release: u32,
    pub git_ref: String,
    pub commit: String,
    pub packages_hash: String,
    /// "ok", or "failed at STEP: reason".
    pub result: String,
}

/// A deploy that was in progress when the agent stopped, found when it starts again.
#[derive(Debug, Clone)]
pub(crate) struct Interrupted {
    pub release: u32,
    /// What it had started: to stop.
    pub processes: Vec<(ProcId, Tracking)>,
    /// Its release is no release of the record: its directory is to be deleted.
    pub orphan: bool,
    /// Its result, as recorded ("failed at health: interrupted: ...").
    pub result: String,
}

impl Deployment {
    /// What a deploy may be based on: bumped by every change of what runs.
    pub(crate) fn generation(&self) -> u64 {
        self.state().record.generation
    }

    /// Why a deploy based on generation `expected` may not go ahead now (what changed
    /// since), or `None` when it may (or is based on nothing).
    pub(crate) fn stale_base(&self, expected: Option<u64>) -> Option<String> {
        let expected = expected?;
        let s = self.state();
        let now = s.record.generation;
        if now == expected {
            return None;
        }
        let what = match (s.record.current_release(), &s.record.last_event) {
            (_, _) if s.record.stopped => "it was stopped".to_string(),
            (Some(r), Some(e)) => format!(
                "release {} ({} {}) runs now; last: {}",
                r.number,
                r.git_ref,
                crate::pipeline::short(&r.commit),
                e.text
            ),
            (Some(r), None) => format!("release {} ({}) runs now", r.number, r.git_ref),
            (None, _) if now == 0 => "it does not exist here any more".to_string(),
            (None, _) => "it has no release here".to_string(),
        };
        Some(format!(
            "{} changed on this agent since this change was prepared (generation {now} here, the change was based on {expected}): {what}",
            self.name
        ))
    }

    /// Deploy `id` (of `git_ref`) was received and waits for its turn.
    pub(crate) fn queued(&self, id: &str, git_ref: &str) {
        self.state().queued.push(DeployRecord {
            id: id.to_string(),
            git_ref: git_ref.to_string(),
            at: crate::clock::now_unix(),
            ..Default::default()
        });
    }

    /// Deploy `id` stopped waiting (it begins, or was refused).
    pub(crate) fn unqueued(&self, id: &str) {
        let mut s = self.state();
        if let Some(i) = s.queued.iter().position(|q| q.id == id) {
            s.queued.remove(i);
        }
    }

    /// Deploy `id` (of `git_ref`) began as release `number`: in the record as in progress
    /// (the caller persists it).
    pub(crate) fn deploy_began(&self, id: &str, git_ref: &str, number: u32) {
        let mut s = self.state();
        s.record.deploying = Some(DeployRecord {
            id: id.to_string(),
            release: number,
            git_ref: git_ref.to_string(),
            at: crate::clock::now_unix(),
            ..Default::default()
        });
        s.revision += 1;
    }

    /// The deploy in progress prepared `release` (its ref, commit and packages are known)
    /// and goes on with `step`; persisted.
    pub(crate) async fn deploy_prepared(
        &self,
        layout: &Layout,
        release: &ReleaseRecord,
        step: &str,
    ) {
        {
            let mut s = self.state();
            let Some(d) = s.record.deploying.as_mut() else {
                return;
            };
            d.git_ref = release.git_ref.clone();
            d.commit = release.commit.clone();
            d.packages_hash = release.packages_hash.clone();
            d.step = step.to_string();
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// The deploy in progress ended: kept with its result among the last deploys, and
    /// persisted.
    pub(crate) async fn deploy_ended(&self, layout: &Layout, ended: Ended) {
        {
            let mut s = self.state();
            let Some(mut d) = s.record.deploying.take() else {
                return;
            };
            if ended.release > 0 {
                d.release = ended.release;
            }
            if !ended.git_ref.is_empty() {
                d.git_ref = ended.git_ref;
            }
            if !ended.commit.is_empty() {
                d.commit = ended.commit;
                d.packages_hash = ended.packages_hash;
            }
            d.result = ended.result;
            d.step.clear();
            d.processes.clear();
            s.keep_deploy(d);
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// After an agent restart: the deploy that was in progress when the agent stopped, now
    /// recorded as interrupted (the failed deploy and the last event say so). Its release
    /// went live or failed if the record has it so; otherwise it was interrupted. The
    /// caller stops its processes and persists.
    pub(crate) fn take_interrupted(&self) -> Option<Interrupted> {
        let mut s = self.state();
        let mut d = s.record.deploying.take()?;
        let recorded = s
            .record
            .release(d.release)
            .map(|r| r.result.as_str().to_string());
        // A deploy cut short after its release went live: its processes are the current
        // release's, which recovery adopts; only a release that did not go live is stopped.
        let live = s.record.current == Some(d.release);
        let processes = std::mem::take(&mut d.processes)
            .into_iter()
            .filter(|_| !live)
            .map(|p| {
                let id = ProcId {
                    pid: p.pid,
                    start_time: p.start_time,
                };
                (id, p.tracking)
            })
            .collect();
        let step = std::mem::take(&mut d.step);
        let why = "interrupted: the agent stopped during the deploy";
        d.result = match &recorded {
            Some(result) if !result.is_empty() => result.clone(),
            _ if step.is_empty() => format!("failed: {why} (before its release started)"),
            _ => format!("failed at {step}: {why}"),
        };
        let interrupted = Interrupted {
            release: d.release,
            processes,
            orphan: recorded.is_none(),
            result: d.result.clone(),
        };
        if recorded.is_none() {
            let now = crate::clock::now_unix();
            let kept = match s.record.current {
                Some(n) => format!("; release {n} kept"),
                None => String::new(),
            };
            s.record.last_event = Some(store::NodeEvent {
                at: now,
                text: format!("deploy of release {} {}{kept}", d.release, d.result),
            });
            if s.record.current.is_some() {
                s.record.failed_deploy = Some(store::FailedDeploy {
                    at: now,
                    release: d.release,
                    step: if step.is_empty() {
                        "deploy".into()
                    } else {
                        step
                    },
                    reason: why.to_string(),
                });
            }
        }
        s.keep_deploy(d);
        s.revision += 1;
        Some(interrupted)
    }
}

impl Inner {
    /// The last deploys, oldest first, then the one in progress and those waiting for
    /// their turn (result "in progress").
    pub(super) fn recent_deploys(&self) -> Vec<DeployRecord> {
        let in_progress = self.record.deploying.iter().chain(&self.queued).map(|d| {
            let mut d = d.clone();
            d.result = IN_PROGRESS.to_string();
            d.step.clear();
            d.processes.clear();
            d
        });
        self.record
            .deploys
            .iter()
            .cloned()
            .chain(in_progress)
            .collect()
    }

    /// `d` ended: kept, the oldest forgotten beyond [`DEPLOYS_KEPT`].
    fn keep_deploy(&mut self, d: DeployRecord) {
        self.record.deploys.push(d);
        let extra = self.record.deploys.len().saturating_sub(DEPLOYS_KEPT);
        self.record.deploys.drain(..extra);
    }

    /// A process of `release`, which is being deployed, started: the deploy's (whether
    /// anything changed).
    pub(super) fn deploy_process_started(
        &mut self,
        release: u32,
        id: ProcId,
        tracking: &Tracking,
    ) -> bool {
        let Some(d) = self.record.deploying.as_mut() else {
            return false;
        };
        if d.release != release || d.processes.iter().any(|p| p.pid == id.pid) {
            return false;
        }
        d.processes.push(StartedProcess {
            pid: id.pid,
            start_time: id.start_time,
            tracking: tracking.clone(),
        });
        d.step = crate::pipeline::events::HEALTH.to_string();
        self.revision += 1;
        true
    }
}
