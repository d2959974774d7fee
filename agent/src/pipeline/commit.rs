//! commit: the new release is healthy (and takes the traffic): it becomes the deployment's
//! instance and its current release in the record; the previous release, if it still
//! runs, drains and stops.

use std::sync::Arc;

use super::events::{Events, Outcome};
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
    events: &Events,
) -> (Outcome, Option<super::switch::Retiring>) {
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
    d.swap_instance(Some(started.instance.clone()));
    let replicas = started
        .replicas
        .iter()
        .map(|(r, _, port)| {
            let s = r.snapshot();
            crate::store::ReplicaRecord::new(*port, s.pid.and_then(ProcId::of), s.tracking)
        })
        .collect();
    d.swap_replicas(started.replicas.iter().map(|(r, _, _)| r.clone()).collect());
    d.commit(
        release.clone(),
        ProcId::of(pid),
        tracking,
        started.private_port,
        replicas,
    );
    d.save_or_log(sup.layout()).await;
    // The previous release (behind the proxy: once it has drained; on another port: now).
    let (drained, retiring) = super::switch::drain_previous(sup, &release, &started, events).await;
    if let Some(took) = drained {
        d.previous_drained(release.number, took);
        d.save_or_log(sup.layout()).await;
    }
    (outcome, retiring)
}
