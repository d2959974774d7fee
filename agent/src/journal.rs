//! The deploy journal: what a deploy or a restart has in flight, in the deployment's record
//! before it takes effect, so an agent that starts again finishes or undoes exactly that.
//!
//! * `starting`: the processes of a release that has not gone live (a deploy or a restart
//!   in progress, recorded as each starts). An agent that starts again stops them: that
//!   release never switched, the record's current release serves.
//! * `retiring`: the release switched away from, with its processes and when its drain
//!   ends. An agent that starts again lets it finish its requests until then, and stops it.
//!
//! Nothing of a deployment then runs that its record does not name.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::deployment::Deployment;
use crate::procstat::ProcId;
use crate::supervisor::{stop_recorded, Supervisor};
use crate::tracking::Tracking;

/// What a deployment has in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starting: Vec<Proc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring: Option<Retiring>,
}

impl Journal {
    pub(crate) fn is_empty(&self) -> bool {
        self.starting.is_empty() && self.retiring.is_none()
    }
}

/// One process of a release, as the journal names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Proc {
    pub release: u32,
    /// 0: the first instance, 1..: the replicas.
    pub replica: usize,
    pub pid: u32,
    pub start_time: u64,
    #[serde(default)]
    pub tracking: Tracking,
}

impl Proc {
    pub(crate) fn new(release: u32, replica: usize, id: ProcId, tracking: Tracking) -> Proc {
        Proc {
            release,
            replica,
            pid: id.pid,
            start_time: id.start_time,
            tracking,
        }
    }

    pub(crate) fn id(&self) -> ProcId {
        ProcId {
            pid: self.pid,
            start_time: self.start_time,
        }
    }
}

/// A release switched away from, draining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Retiring {
    pub release: u32,
    pub procs: Vec<Proc>,
    /// When its requests must be finished (Unix seconds): then it stops.
    pub drain_until: i64,
    /// How long it may take to exit after SIGTERM.
    pub kill_timeout_ms: u64,
}

/// How often a recovering agent looks whether a retiring release has exited by itself.
const POLL: Duration = Duration::from_millis(100);

impl Supervisor {
    /// An agent that starts again: what `d` had in flight is undone (a release that never
    /// went live stops, its directory goes) or finished (a release switched away from
    /// drains and stops, in the background). Before `d`'s current release is adopted.
    pub(crate) async fn finish_journal(self: &Arc<Self>, d: &Arc<Deployment>) {
        let journal = d.journal();
        if journal.is_empty() {
            return;
        }
        let current = d.current().map(|r| r.number);
        for p in &journal.starting {
            let grace = d
                .record()
                .release(p.release)
                .map_or(crate::spec::DEFAULT_KILL_TIMEOUT, |r| r.spec.kill_timeout);
            let how = stop_recorded(p.id(), p.tracking.clone(), grace).await;
            tracing::warn!(deployment = %d.name(), release = p.release, pid = p.pid, how = how.as_str(), "stopped a process of a release that had not gone live when the agent stopped (the record's release serves)");
        }
        let unfinished: Vec<u32> = journal
            .starting
            .iter()
            .map(|p| p.release)
            .filter(|n| Some(*n) != current && d.record().release(*n).is_none())
            .collect();
        for n in unfinished {
            let dir = self.layout().release(d.name(), n);
            if tokio::fs::remove_dir_all(&dir).await.is_ok() {
                tracing::warn!(deployment = %d.name(), release = n, dir = %dir.display(), "removed the directory of a release that never went live");
            }
        }
        d.start_abandoned(self.layout()).await;
        if let Some(r) = journal.retiring {
            let (sup, d) = (self.clone(), d.clone());
            tokio::spawn(async move { finish_retiring(&sup, &d, r).await });
        }
    }
}

/// Lets a release switched away from finish its requests (until its drain ends, or until
/// it has exited), then stops it, and clears it from the journal.
async fn finish_retiring(sup: &Supervisor, d: &Deployment, r: Retiring) {
    tracing::info!(deployment = %d.name(), release = r.release, "the release switched away from before the agent stopped drains and stops now");
    let running = || r.procs.iter().any(|p| p.id().is_running());
    while running() && crate::clock::now_unix() < r.drain_until {
        tokio::time::sleep(POLL).await;
    }
    let grace = Duration::from_millis(r.kill_timeout_ms);
    for p in &r.procs {
        let how = stop_recorded(p.id(), p.tracking.clone(), grace).await;
        tracing::info!(deployment = %d.name(), release = r.release, pid = p.pid, how = how.as_str(), "stopped the previous release");
    }
    d.retired(sup.layout()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_journal_is_not_written() {
        let j = Journal::default();
        assert!(j.is_empty());
        assert_eq!(serde_json::to_string(&j).unwrap(), "{}");
        let mut j = Journal::default();
        j.starting.push(Proc::new(
            2,
            1,
            ProcId {
                pid: 42,
                start_time: 7,
            },
            Tracking::default(),
        ));
        let back: Journal = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
        assert_eq!(back.starting[0].id().pid, 42);
    }
}
