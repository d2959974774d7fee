//! Replicas that follow the load (`replicas: {min, max, target_in_flight}`): every
//! [`PERIOD`] the node proxy's requests in flight on each autoscaled deployment's route are
//! sampled into its window ([`decide`]: pure); a decision to add replicas or remove one is
//! carried out by [`scale`] through the deployment's own transitions, under its op lock
//! (never beside a deploy, restart or removal: one that holds the lock wins, the window
//! starts again after it). Within the node's room ([`room`]); every change is an event
//! kept in the record (`status NAME`) and counted in `/metrics`.

mod decide;
mod room;
mod scale;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use decide::{decide, describe, Decision, Sample, Window, PERIOD};

use crate::deployment::Deployment;
use crate::proxy::RouteStats;
use crate::spec::{Autoscale, Strategy};
use crate::supervisor::Supervisor;

/// How many scalings a record keeps.
pub(crate) const SCALE_EVENTS_KEPT: usize = 10;
/// How many of the last samples `status` averages for its "in flight per replica".
const SHOWN_SAMPLES: usize = 5;

/// A change of the replica count by the load, or why one could not be made (`from` ==
/// `to`), in the deployment's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ScaleEvent {
    /// Unix seconds.
    pub at: i64,
    pub from: u32,
    pub to: u32,
    pub text: String,
}

/// The autoscaler's state of one deployment (not persisted: a restarted agent samples
/// again).
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub window: Window,
    /// The average in flight per ready replica over the last samples, for `status`.
    pub per_replica: Option<f64>,
    /// A scaling is under way.
    pub busy: bool,
    /// Why the last scale up could not be made (said once per reason).
    pub blocked: Option<String>,
}

/// Samples and scales every autoscaled deployment, for as long as the agent runs.
pub(crate) async fn run(sup: Arc<Supervisor>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let autoscaled: Vec<(Arc<Deployment>, Autoscale)> = sup
            .registry()
            .all()
            .into_iter()
            .filter_map(|d| {
                let spec = d.current()?.spec;
                let a = spec
                    .autoscale
                    .filter(|_| spec.strategy == Strategy::Switch)?;
                Some((d, a))
            })
            .collect();
        if autoscaled.is_empty() {
            continue;
        }
        let routes = sup.proxy().stats_if_running().await.unwrap_or_default();
        for (d, a) in autoscaled {
            step(&sup, &d, &a, &routes);
        }
    }
}

/// One sample of `d`'s route, and a scaling started when the window says so.
fn step(sup: &Arc<Supervisor>, d: &Arc<Deployment>, a: &Autoscale, routes: &[RouteStats]) {
    let Some(release) = d.current() else {
        return;
    };
    let running = d.running_count();
    if running == 0 || d.instance().is_none() {
        d.set_in_flight_per_replica(None);
        return;
    }
    let listen = sup.app_host().public_address(release.spec.port);
    let Some(route) = routes.iter().find(|r| r.listen == listen) else {
        return;
    };
    let now = tokio::time::Instant::now().into_std();
    let sample = Sample {
        at: now,
        in_flight: route.serving.iter().map(|b| b.in_flight).sum(),
        ready: route.serving.len() as u32,
        running,
    };
    let keep = a.scale_up_after.max(a.scale_down_after);
    let samples = d.load_sampled(sample, keep);
    let shown: Vec<f64> = samples
        .iter()
        .rev()
        .take(SHOWN_SAMPLES)
        .map(Sample::per_replica)
        .collect();
    d.set_in_flight_per_replica(Some(shown.iter().sum::<f64>() / shown.len().max(1) as f64));
    let Decision::Scale {
        from,
        to,
        per_replica,
        over,
    } = decide(a, running, &samples, now)
    else {
        return;
    };
    if !d.begin_scaling() {
        return;
    }
    let why = describe(a, from, to, per_replica, over);
    let (sup, d) = (sup.clone(), d.clone());
    tokio::spawn(async move {
        scale::scale(&sup, &d, release.number, from, to, why).await;
        d.end_scaling();
    });
}
