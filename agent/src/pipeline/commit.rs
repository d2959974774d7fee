//! commit: the new release is healthy. The previous release (if it still ran, on another
//! port) is stopped, and the new one becomes the current release in the record.

use std::sync::Arc;

use super::events::Outcome;
use super::start::Started;
use super::Prepared;
use crate::deployment::Deployment;
use crate::procstat::ProcId;
use crate::spec::Spec;
use crate::supervisor::Supervisor;

pub(super) async fn commit(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    spec: &Spec,
    prepared: Prepared,
    started: Started,
    pid: u32,
) -> Outcome {
    if let Some(prev) = started.previous.filter(|_| !started.previous_stopped) {
        prev.stop().await;
    }
    let release = prepared.release;
    let outcome = Outcome {
        ok: true,
        release: release.number,
        commit: release.commit.clone(),
        git_ref: release.git_ref.clone(),
        url: sup.app_url(spec.port),
        packages_hash: release.packages_hash.clone(),
        frozen: prepared.frozen,
        ..Default::default()
    };
    let tracking = started.instance.snapshot().tracking;
    d.commit(release, ProcId::of(pid), tracking);
    d.save_or_log(sup.layout()).await;
    outcome
}
