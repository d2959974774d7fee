//! commit: the new release is healthy (and takes the traffic): it becomes the deployment's
//! instance and its current release in the record. The previous release, if it still
//! runs, is handed back to drain and stop once the deploy has answered.

use std::sync::Arc;

use super::events::{Events, Outcome};
use super::start::Started;
use super::Prepared;
use crate::deployment::{Deployment, Live};
use crate::spec::Spec;
use crate::supervisor::NodeServices;

pub(super) async fn commit(
    node: &NodeServices,
    d: &Arc<Deployment>,
    spec: &Spec,
    prepared: Prepared,
    started: Started,
    pid: u32,
) -> (Outcome, Option<super::switch::Retiring>) {
    let release = prepared.release;
    let live_event = prepared.live_event;
    let outcome = Outcome {
        ok: true,
        release: release.number,
        commit: release.commit.clone(),
        git_ref: release.git_ref.clone(),
        url: node.app_url(spec.port),
        packages_hash: release.packages_hash.clone(),
        frozen: prepared.frozen,
        ..Default::default()
    };
    let live = Live {
        release: release.clone(),
        instance: started.instance.clone(),
        pid,
        private_port: started.private_port,
        replicas: started
            .replicas
            .iter()
            .map(|(r, _, port)| (r.clone(), *port))
            .collect(),
        event: live_event,
    };
    d.go_live(node.layout(), live).await;
    let retiring = super::switch::Retiring::of(node, &release, &started);
    (outcome, retiring)
}

/// After the deploy has answered: the previous release drains (behind the node proxy: how
/// long that took is recorded with `release`, and said in `events`) and stops. `events`
/// is closed before the stop (the client has heard all it waits for).
pub(super) async fn retire(
    node: &NodeServices,
    d: &Deployment,
    release: u32,
    retiring: Option<super::switch::Retiring>,
    events: Events,
) {
    if let Some(r) = retiring {
        if let Some(took) = r.drain(node, &events).await {
            d.previous_drained(node.layout(), release, took).await;
        }
        drop(events);
        r.stop().await;
    }
    // Nothing of what served before runs now: the journal forgets it.
    d.retired(node.layout()).await;
}
