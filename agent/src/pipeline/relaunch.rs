//! restart and start: a new process of the current release, with no resolve, fetch,
//! checkout, packages or start script — its release directory and environment are used
//! as they are, and its secrets are read again (a rotated secret reaches the app). Behind
//! the node proxy the new process starts beside the running one and takes the traffic
//! once healthy (no outage); with `strategy: recreate`, or after `stop`, it starts in the
//! old one's place. A new process that never becomes healthy is stopped, and what ran
//! before keeps running.

use std::sync::Arc;
use std::time::Instant;

use super::events::{self, Events, Outcome, StepError};
use super::prepare::private_ports;
use super::{fallback, launch, preflight, Prepared};
use crate::deployment::Deployment;
use crate::error::Error;
use crate::spec::Strategy;
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// Starts relaunching `name`'s current release in the background: its events, the outcome
/// last. `only_if_stopped` (`deployctl start`): a running deployment is left as it is.
pub(crate) fn spawn(
    sup: Arc<Supervisor>,
    name: &str,
    only_if_stopped: bool,
) -> Result<tokio_stream::wrappers::UnboundedReceiverStream<events::Event>, Error> {
    let d = sup
        .registry()
        .get(name)
        .ok_or_else(|| Error::NotFound(name.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let events = Events::new(tx).with_metrics(sup.metrics().clone());
    tokio::spawn(async move {
        let began = Instant::now();
        let Some(_op) = d.begin().await else {
            events.finish(Outcome {
                ok: false,
                failed_step: events::START.to_string(),
                reason: format!("{} was removed meanwhile", d.name()),
                total: began.elapsed(),
                ..Default::default()
            });
            return;
        };
        let why = if only_if_stopped {
            Why::Start
        } else {
            Why::Restart
        };
        let (mut outcome, retiring) = relaunch(&sup, &d, why, &events).await;
        outcome.total = began.elapsed();
        outcome.generation = d.generation();
        let release = outcome.release;
        events.finish(outcome);
        // What ran before drains and stops after the answer (under the deployment's lock).
        super::commit::retire(&sup, &d, release, retiring, events).await;
    });
    Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
}

/// Why the current release is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// `deployctl restart`: a new process beside the running one.
    Restart,
    /// `deployctl start`: only when stopped.
    Start,
    /// A request came for a sleeping deployment.
    Wake,
}

/// Wakes sleeping `d` for a request the node proxy holds: its current release started and
/// checked as `deployctl start` does (what it says goes to the deploy log), under its
/// lock, if it has room (its memory limit, its GPUs). `Ok(None)`: it did not sleep
/// (another request woke it, a deploy); `Ok(Some(took))`: woken; `Err`: why not (it
/// sleeps on).
pub(crate) async fn wake(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
) -> Result<Option<std::time::Duration>, String> {
    let Some(_op) = d.begin().await else {
        return Err(format!("{} was removed", d.name()));
    };
    if !d.is_sleeping() {
        return Ok(None);
    }
    if let Some((why, _)) = d.wake_failure_within(crate::sleep::WAKE_RETRY) {
        return Err(why);
    }
    d.wake_began();
    // Nobody reads the events but the deploy log.
    let (tx, _) = tokio::sync::mpsc::unbounded_channel();
    let events = Events::new(tx).with_metrics(sup.metrics().clone());
    let room = match d.current() {
        Some(r) => preflight::resources(sup, &r.spec, r.spec.start_count(d.running_count())),
        None => Ok(()),
    };
    let (outcome, retiring) = match room {
        Ok(()) => relaunch(sup, d, Why::Wake, &events).await,
        Err(e) => failed(e.step, e.reason),
    };
    let failure = (!outcome.ok).then(|| {
        let reason = outcome.reason.lines().next().unwrap_or_default();
        format!("the wake failed at {}: {reason}", outcome.failed_step)
    });
    let took = d.wake_ended(failure.clone());
    super::commit::retire(sup, d, outcome.release, retiring, events).await;
    match failure {
        None => Ok(Some(took)),
        Some(why) => Err(why),
    }
}

/// Under the deployment's lock, in phases: the current release (none: refused), left as
/// it is when `deployctl start` finds it running, its directory looked for, then prepared
/// and launched as a deploy's last steps are; a failure keeps what ran before.
async fn relaunch(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    why: Why,
    events: &Events,
) -> (Outcome, Option<super::switch::Retiring>) {
    let only_if_stopped = why == Why::Start;
    let Some(current) = d.current() else {
        return failed(
            events::START,
            format!(
                "{} has no release on this node (its deploys failed): deploy it with `deployctl run`",
                d.name()
            ),
        );
    };
    if only_if_stopped && !d.is_stopped() && d.instance().is_some() {
        events.info(
            events::START,
            format!("release {} is running already", current.number),
        );
        return (running(sup, &current), None);
    }
    events.open_log(sup.layout().deploy_log(d.name())).await;
    let spec = current.spec.clone();
    let dir = sup.layout().release(d.name(), current.number);
    if tokio::fs::metadata(&dir).await.is_err() {
        return failed(
            events::START,
            format!(
                "release {}'s directory {} is gone: deploy it again with `deployctl run --load {}`",
                current.number,
                dir.display(),
                d.name()
            ),
        );
    }
    let prepared = match prepare(sup, d, &current, dir, why, events).await {
        Ok(p) => p,
        Err(e) => return (keep_previous(sup, d, e, events).await, None),
    };
    let (outcome, retiring) = match launch(sup, d, &spec, prepared, events).await {
        Ok(done) => done,
        // The release's directory stays: it is still the current release's.
        Err((e, _)) => (keep_previous(sup, d, e, events).await, None),
    };
    d.end_draining();
    (outcome, retiring)
}

/// A relaunch that failed at `step` before anything changed.
fn failed(step: &str, reason: String) -> (Outcome, Option<super::switch::Retiring>) {
    let outcome = Outcome {
        ok: false,
        failed_step: step.to_string(),
        reason,
        ..Default::default()
    };
    (outcome, None)
}

/// The outcome of a `deployctl start` that finds `current` running: it, as it is.
fn running(sup: &Supervisor, current: &ReleaseRecord) -> Outcome {
    Outcome {
        ok: true,
        release: current.number,
        commit: current.commit.clone(),
        git_ref: current.git_ref.clone(),
        url: sup.app_url(current.spec.port),
        packages_hash: current.packages_hash.clone(),
        ..Default::default()
    }
}

/// What a relaunch of `current` (in `dir`) starts from: its secrets read again, its
/// identity, private ports when it switches, its venv leased; nothing is built.
async fn prepare(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    current: &ReleaseRecord,
    dir: std::path::PathBuf,
    why: Why,
    events: &Events,
) -> Result<Prepared, StepError> {
    let spec = &current.spec;
    preflight::check_secrets(sup, spec, events).await?;
    preflight::identity(sup, d).await?;
    let ports = match spec.strategy {
        Strategy::Switch => Some(private_ports(
            sup,
            spec.start_count(d.running_count()) as usize,
        )?),
        Strategy::Recreate => None,
    };
    let all = ports.as_ref().map(|l| l.ports.clone()).unwrap_or_default();
    Ok(Prepared {
        release: current.clone(),
        dir,
        frozen: Vec::new(),
        private_port: all.first().copied(),
        replica_ports: all.iter().skip(1).copied().collect(),
        _lease: (!current.packages_hash.is_empty())
            .then(|| sup.venvs().lease(&current.packages_hash)),
        // Its artifacts are the current release's: collection keeps them anyway.
        _artifacts: Vec::new(),
        _ports: ports,
        live_event: live_event(current.number, why),
    })
}

/// What the deployment's last event says once the relaunched release is live.
fn live_event(release: u32, why: Why) -> String {
    match why {
        Why::Start => format!("release {release} started with `deployctl start`"),
        Why::Restart => format!("release {release} restarted with `deployctl restart`"),
        Why::Wake => format!("release {release} woke up: a request came while it slept"),
    }
}

/// A relaunch that failed at a step: the error redacted, what ran before kept.
async fn keep_previous(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    e: StepError,
    events: &Events,
) -> Outcome {
    let e = events.redact_error(e);
    fallback::keep_previous(sup, d, e, None, fallback::Attempt::Restart).await
}
