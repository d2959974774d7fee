//! The node-local store: one JSON record per deployment (in the [`Layout`] of the data
//! directory), written atomically, so the agent knows after a restart what it was running.

mod delete;
pub(crate) use delete::delete;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::procstat::ProcId;
use crate::spec::Spec;

pub(crate) use crate::layout::Layout;

/// One release of a deployment: what was deployed and how it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReleaseRecord {
    pub number: u32,
    /// The spec this release was deployed with (a rollback restarts it as it was).
    pub spec: Spec,
    /// The ref as resolved ("main", "v1.2.0", or the commit given).
    pub git_ref: String,
    pub commit: String,
    /// Key of the Python environment ("" when no packages were needed).
    pub packages_hash: String,
    /// The venv's directory, if any (`env_dir` in records: the name on disk stays, so an
    /// upgraded agent re-adopts and restarts apps with their venv).
    #[serde(rename = "env_dir")]
    pub venv_dir: Option<PathBuf>,
    /// Unix seconds.
    pub deployed_at: i64,
    /// How its deploy went.
    pub result: ReleaseResult,
    /// Unix seconds when the node proxy switched traffic to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<i64>,
    /// How long the release it replaced took to finish its requests (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_drained_ms: Option<u64>,
}

/// How a release's deploy went. On disk (and in `history`) the words are "ok" and
/// "failed at STEP: reason", as they always were.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ReleaseResult {
    /// Being deployed (not written: a record is saved with its result).
    #[default]
    Pending,
    Ok,
    /// The step that failed and the first line of why.
    Failed(String),
}

impl ReleaseResult {
    pub(crate) fn failed(step: &str, reason: &str) -> ReleaseResult {
        ReleaseResult::Failed(format!("failed at {step}: {reason}"))
    }

    pub(crate) fn is_ok(&self) -> bool {
        *self == ReleaseResult::Ok
    }

    /// The words of the record and of `history`.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            ReleaseResult::Pending => "",
            ReleaseResult::Ok => "ok",
            ReleaseResult::Failed(why) => why,
        }
    }
}

impl Serialize for ReleaseResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReleaseResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "" => ReleaseResult::Pending,
            "ok" => ReleaseResult::Ok,
            _ => ReleaseResult::Failed(s),
        })
    }
}

/// Everything the agent remembers about a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub name: String,
    /// The release serving now, if any.
    pub current: Option<u32>,
    /// Every release, oldest first (failed ones too: they are history).
    pub releases: Vec<ReleaseRecord>,
    /// The app's process (group leader) of the current release, written whenever it is
    /// (re)started, for re-adoption after an agent restart.
    #[serde(default)]
    pub pid: Option<u32>,
    /// That process's start time (`/proc/PID/stat` field 22): a reused pid is never adopted.
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    /// The release that process runs.
    #[serde(default)]
    pub pid_release: Option<u32>,
    /// How the rest of that app's processes are found (its instance id and cgroup).
    #[serde(default)]
    pub tracking: crate::tracking::Tracking,
    /// The private port the current release's instance listens on behind the node proxy
    /// (`strategy: switch`); restarts and a re-adopting agent keep it, so the route stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_port: Option<u16>,
    /// The current release's other processes (`replicas` > 1), each on its private port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaRecord>,
    /// Stopped by `deployctl stop`: not started again when the agent starts, until
    /// `deployctl start` (or a deploy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// Stopped after `idle_timeout` without a request: its route stays open and the next
    /// request wakes it; an agent that starts again leaves it sleeping.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sleeping: bool,
    /// Its own Unix user and group (when the agent runs as root), kept for its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::identity::Identity>,
    /// The last thing that happened to it (a restart and why, a deploy, a failed one), kept
    /// across agent restarts for the agent's page and `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<NodeEvent>,
    /// The last deploy, when it failed while the current release kept serving; cleared by
    /// a newer release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_deploy: Option<FailedDeploy>,
    /// What a deploy or restart has in flight (see [`crate::journal`]).
    #[serde(default, skip_serializing_if = "crate::journal::Journal::is_empty")]
    pub journal: crate::journal::Journal,
    /// Bumped by every change of what runs (a release going live, a stop): what a client's
    /// deploy is based on (`expected_generation`).
    #[serde(default)]
    pub generation: u64,
    /// The last deploys (at most [`DEPLOYS_KEPT`]), oldest first: how each ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deploys: Vec<DeployRecord>,
    /// The deploy in progress, written when it begins (and as it goes), so that an agent
    /// that stopped during it knows afterwards: it was interrupted, and what it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploying: Option<DeployRecord>,
    /// The last changes of the replica count by the load (replicas that follow it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_events: Vec<crate::autoscale::ScaleEvent>,
}

/// How many ended deploys a record keeps.
pub(crate) const DEPLOYS_KEPT: usize = 50;

/// A deploy the agent took, by the client's id: the release it made (or would have), and
/// how it ended ("ok", "failed at STEP: reason"; empty while in progress).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeployRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub release: u32,
    #[serde(default)]
    pub git_ref: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default)]
    pub packages_hash: String,
    #[serde(default)]
    pub result: String,
    /// Unix seconds when it began.
    pub at: i64,
    /// While in progress: the step it is at, as far as the record knows ("start", "health").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step: String,
    /// While in progress: the processes it started (stopped if the agent restarts meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<StartedProcess>,
}

/// A process a deploy in progress started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartedProcess {
    pub pid: u32,
    pub start_time: u64,
    #[serde(default)]
    pub tracking: crate::tracking::Tracking,
}

/// Something that happened to a deployment, in words, and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeEvent {
    pub at: i64,
    pub text: String,
}

/// A deploy that failed while the current release kept serving: the release it would have
/// been, the step that failed and the first line of why (secrets redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailedDeploy {
    pub at: i64,
    pub release: u32,
    pub step: String,
    pub reason: String,
}

/// One more process of the current release behind the node proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicaRecord {
    pub private_port: u16,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub pid_start_time: Option<u64>,
    #[serde(default)]
    pub tracking: crate::tracking::Tracking,
}

impl ReplicaRecord {
    pub(crate) fn new(
        private_port: u16,
        id: Option<ProcId>,
        tracking: crate::tracking::Tracking,
    ) -> Self {
        ReplicaRecord {
            private_port,
            pid: id.map(|p| p.pid),
            pid_start_time: id.map(|p| p.start_time),
            tracking,
        }
    }

    /// The recorded process, if one is.
    pub(crate) fn process(&self) -> Option<ProcId> {
        Some(ProcId {
            pid: self.pid?,
            start_time: self.pid_start_time?,
        })
    }
}

impl Record {
    pub(crate) fn new(name: &str) -> Self {
        Record {
            name: name.to_string(),
            current: None,
            releases: Vec::new(),
            pid: None,
            pid_start_time: None,
            pid_release: None,
            tracking: Default::default(),
            private_port: None,
            replicas: Vec::new(),
            stopped: false,
            sleeping: false,
            identity: None,
            last_event: None,
            failed_deploy: None,
            journal: Default::default(),
            generation: 0,
            deploys: Vec::new(),
            deploying: None,
            scale_events: Vec::new(),
        }
    }

    /// Remembers the process running `release` and how its instance is tracked.
    pub(crate) fn set_process(
        &mut self,
        release: u32,
        id: Option<ProcId>,
        tracking: crate::tracking::Tracking,
    ) {
        self.tracking = tracking;
        self.pid = id.map(|p| p.pid);
        self.pid_start_time = id.map(|p| p.start_time);
        self.pid_release = id.map(|_| release);
    }

    /// The recorded process and its release, if one is recorded.
    pub(crate) fn process(&self) -> Option<(ProcId, u32)> {
        let pid = self.pid?;
        let id = match self.pid_start_time {
            Some(start_time) => ProcId { pid, start_time },
            // A record written before start times were kept: trust the pid only while it
            // still leads its own process group, as every app does.
            None => ProcId::of(pid).filter(|_| crate::ports::pgid_of(pid) == Some(pid))?,
        };
        Some((id, self.pid_release.or(self.current)?))
    }

    pub(crate) fn next_release(&self) -> u32 {
        self.releases.iter().map(|r| r.number).max().unwrap_or(0) + 1
    }

    pub(crate) fn release(&self, number: u32) -> Option<&ReleaseRecord> {
        self.releases.iter().find(|r| r.number == number)
    }

    pub(crate) fn current_release(&self) -> Option<&ReleaseRecord> {
        self.current.and_then(|n| self.release(n))
    }
}

/// Writes `record` atomically: temporary file, fsync, rename, fsync of the directory
/// (on a blocking thread).
pub(crate) async fn save(layout: &Layout, record: Record) -> Result<()> {
    let layout = layout.clone();
    blocking(move || {
        let path = layout.record(&record.name);
        let dir = layout.deployment(&record.name);
        crate::fsmode::create_dir(&dir, crate::fsmode::PASS_THROUGH_DIR)
            .map_err(|e| Error::io("creating deployment directory", &dir, e))?;
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::Internal(format!("encoding record: {e}")))?;
        crate::fsmode::write_atomic(&path, &json)
    })
    .await
}

/// Runs store work on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("store task: {e}")))?
}

/// Reads every record in the data directory; unreadable ones are logged and skipped.
pub(crate) async fn load_all(layout: &Layout) -> Vec<Record> {
    let layout = layout.clone();
    blocking(move || Ok(load_all_blocking(&layout)))
        .await
        .unwrap_or_default()
}

fn load_all_blocking(layout: &Layout) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(layout.deployments()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join("deployment.json");
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable record")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable record")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ReleaseResult;

    #[test]
    fn release_results_keep_their_words_on_disk() {
        for (result, json) in [
            (ReleaseResult::Ok, "\"ok\""),
            (
                ReleaseResult::failed("health", "connection refused"),
                "\"failed at health: connection refused\"",
            ),
            (ReleaseResult::Pending, "\"\""),
        ] {
            assert_eq!(serde_json::to_string(&result).unwrap(), json);
            assert_eq!(serde_json::from_str::<ReleaseResult>(json).unwrap(), result);
        }
    }
}
