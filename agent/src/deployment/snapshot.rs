//! A deployment as it is right now, read under one taking of its lock: for `status`, the
//! health endpoints and metrics (the generation and the current release together, so a
//! client's deploy based on them is based on what it saw).

use super::Deployment;
use crate::instance::InstanceStatus;
use crate::store::{self, ReleaseRecord};

/// What a deployment looks like right now, for `status`, health endpoints and metrics.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub current: Option<ReleaseRecord>,
    pub last_result: Option<String>,
    pub instance: Option<InstanceStatus>,
    /// The other instances' (`replicas` > 1), with their private ports.
    pub replicas: Vec<(InstanceStatus, u16)>,
    pub deploying: Option<u32>,
    /// The pid the record names (an app an earlier agent run started).
    pub recorded_pid: Option<u32>,
    /// Stopped by the user.
    pub stopped: bool,
    /// Asleep after its idle timeout, and how its wakes go.
    pub sleeping: bool,
    pub sleep: super::sleep::SleepState,
    pub last_event: Option<store::NodeEvent>,
    pub failed_deploy: Option<store::FailedDeploy>,
    /// What a deploy may be based on (read with the current release, at once).
    pub generation: u64,
    /// The last deploys, the one in progress and those waiting last.
    pub deploys: Vec<store::DeployRecord>,
}

impl Deployment {
    pub(crate) fn snapshot(&self) -> Snapshot {
        let s = self.state();
        Snapshot {
            current: s.record.current_release().cloned(),
            last_result: s
                .record
                .releases
                .last()
                .map(|r| r.result.as_str().to_string()),
            instance: s.instance.as_ref().map(|i| i.snapshot()),
            replicas: s
                .replicas
                .iter()
                .zip(&s.record.replicas)
                .map(|(i, r)| (i.snapshot(), r.private_port))
                .collect(),
            deploying: s.deploying.as_ref().map(|d| d.number),
            recorded_pid: s.record.pid,
            stopped: s.record.stopped,
            sleeping: s.record.sleeping,
            sleep: s.sleep.clone(),
            last_event: s.record.last_event.clone(),
            failed_deploy: s.record.failed_deploy.clone(),
            generation: s.record.generation,
            deploys: s.recent_deploys(),
        }
    }
}
