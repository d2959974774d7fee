//! The deploy pipeline, one file per step:
//! [`preflight`] (secrets, port) → [`resolve`] → [`fetch`] → [`checkout`] → [`packages`]
//! (while fetching, when it can) and [`artifacts`] (from the start, linked once the checkout
//! is there; [`prepare`]) → [`start_script`] → [`start`] → [`health`] → [`switch`]
//! (behind the node proxy) → [`commit`];
//! when a step fails, [`fallback`] keeps the previous release serving (started again if it
//! had been stopped for the port). "Rollback" is the user's `deployctl rollback`, not this.
//!
//! The previous release keeps serving until the new one is prepared; it is stopped just
//! before the new one starts only when both need the same port.

pub(crate) mod apt;
mod artifacts;
mod beneath;
mod build_limits;
mod checkout;
mod commit;
pub(crate) mod events;
mod fallback;
mod fetch;
pub(crate) mod git;
pub(crate) mod git_auth;
mod handover;
mod health;
mod install_cmd;
mod packages;
pub(crate) mod plan;
mod port_wait;
mod preflight;
mod prepare;
mod prune;
pub(crate) mod relaunch;
mod resolve;
mod start;
pub(crate) mod start_script;
mod switch;
pub(crate) mod venv;
mod warmup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use events::{Events, Outcome, StepError};
pub(crate) use preflight::node_memory;
pub(crate) use prepare::private_ports;
pub(crate) use relaunch::spawn as spawn_relaunch;
pub(crate) use warmup::warm_one;

use crate::deployment::Deployment;
use crate::spec::Spec;
use crate::store::{self, ReleaseRecord};
use crate::supervisor::Supervisor;
use crate::venvs::VenvLease;

/// What the preparing steps produced for the new release.
pub(crate) struct Prepared {
    release: ReleaseRecord,
    dir: PathBuf,
    /// The exact versions in its venv.
    frozen: Vec<String>,
    /// Where its instance listens behind the node proxy (`strategy: switch`).
    private_port: Option<u16>,
    /// Where its other instances (`replicas` > 1) listen.
    replica_ports: Vec<u16>,
    /// Keeps its venv from garbage collection until the deploy is over.
    _lease: Option<VenvLease>,
    /// Keeps its artifacts from garbage collection until the deploy is over.
    _artifacts: Vec<crate::leases::Lease>,
    /// Keeps its private ports from other deploys until the deploy is over.
    _ports: Option<crate::reservations::PortLease>,
    /// The deployment's last event once it is live ("release 3 deployed (v2 0112ce2c5d)").
    live_event: String,
}

/// What a deploy request asks beside its spec: the generation it is based on (none: no
/// check) and the client's id for it ("": none).
#[derive(Debug, Clone, Default)]
pub(crate) struct Basis {
    pub expected_generation: Option<u64>,
    pub deploy_id: String,
}

/// Starts deploying `spec` in the background: its events, the outcome last. The deploy
/// runs to its end whether or not anyone listens. What this node does not do (apt packages
/// where its config does not allow them) is refused first, as bad input; so is a deploy
/// based on a generation the deployment is no longer at (a refusal: the stream's last item).
pub(crate) fn spawn(
    sup: Arc<Supervisor>,
    spec: Spec,
    basis: Basis,
) -> Result<tokio_stream::wrappers::UnboundedReceiverStream<events::Event>, crate::error::Error> {
    if !spec.apt.is_empty() && !sup.config().allow_apt {
        return Err(crate::error::Error::InvalidInput {
            field: "packages.apt".into(),
            reason: "this agent does not install apt packages (allow_apt = false in its config); install them on the node, or use pip".into(),
        });
    }
    if let Some(why) = sup
        .registry()
        .get(&spec.name)
        .and_then(|d| d.stale_base(basis.expected_generation))
    {
        return Err(crate::error::Error::Conflict(why));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let events = Events::new(tx).with_metrics(sup.metrics().clone());
    tokio::spawn(deploy(sup, spec, basis, events));
    Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
}

/// Deploys `spec`; always ends with an outcome (also sent as the last event), unless it is
/// refused as based on a stale generation.
async fn deploy(sup: Arc<Supervisor>, spec: Spec, basis: Basis, events: Events) -> Outcome {
    let began = Instant::now();
    let d = sup.registry().get_or_create(&spec.name);
    let requested = spec.git_ref.clone().unwrap_or_default();
    d.queued(&basis.deploy_id, &requested);
    let op = d.begin().await;
    d.unqueued(&basis.deploy_id);
    let Some(_op) = op else {
        // Removed while we waited: start over with a fresh entry.
        return Box::pin(deploy(sup, spec, basis, events)).await;
    };
    // Its turn: based on what runs now, or refused (what changed is said).
    if let Some(why) = d.stale_base(basis.expected_generation) {
        sup.discard_unreleased(&d).await;
        events.refuse(why);
        return Outcome::default();
    }
    if !d.has_releases() {
        // What an older agent left under this name (a directory without a record) is not
        // this deployment's: its logs must not show up in the new owner's.
        // Data kept by `remove --keep-data` stays: it is this owner's (authorized).
        let keep = crate::supervisor::kept::survivors(sup.has_kept_data(&spec.name));
        if let Err(e) = store::delete(sup.layout(), &spec.name, keep).await {
            tracing::warn!(deployment = %spec.name, error = %e, "cannot delete a leftover directory");
        }
    }
    // Opened under the deployment's lock: a failed first deploy of the same name that
    // finishes while this one waits deletes the directory this log lives in.
    events.open_log(sup.layout().deploy_log(&spec.name)).await;
    let number = d.begin_deploy(&spec.owner);
    d.deploy_began(&basis.deploy_id, &requested, number);
    d.save_or_log(sup.layout()).await;
    let (mut outcome, retiring) = match steps(&sup, &d, &spec, number, &events).await {
        Ok(done) => done,
        Err((err, prepared)) => {
            let err = events.redact_error(err);
            let attempt = fallback::Attempt::Deploy(number);
            (
                fallback::keep_previous(&sup, &d, err, prepared, attempt).await,
                None,
            )
        }
    };
    d.end_deploy();
    d.end_draining();
    d.deploy_ended(sup.layout(), ended(&outcome, number)).await;
    if outcome.release == 0 {
        // A first deploy that failed leaves nothing behind; the client has the reason.
        sup.discard_unreleased(&d).await;
    }
    outcome.total = began.elapsed();
    outcome.owner = spec.owner.clone();
    outcome.generation = d.generation();
    events.finish(outcome.clone());
    // The deploy has answered at the switch; the previous release drains and stops now
    // (still under the deployment's lock).
    commit::retire(&sup, &d, outcome.release, retiring, events).await;
    if outcome.ok {
        // After the client has its answer (still under the deployment's lock).
        prune::after_success(&sup, &d).await;
    }
    outcome
}

/// A deploy's end as the record keeps it (`number`: the release it would have made).
fn ended(o: &Outcome, number: u32) -> crate::deployment::Ended {
    let reason = o.reason.lines().next().unwrap_or_default();
    crate::deployment::Ended {
        release: if o.ok { o.release } else { number },
        git_ref: o.git_ref.clone(),
        commit: o.commit.clone(),
        packages_hash: o.packages_hash.clone(),
        result: if o.ok {
            "ok".to_string()
        } else {
            format!("failed at {}: {reason}", o.failed_step)
        },
    }
}

/// A failed step, with the release it had prepared (if it got that far).
type Failure = (StepError, Option<Prepared>);

/// The steps in order.
async fn steps(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    spec: &Spec,
    number: u32,
    events: &Events,
) -> Result<(Outcome, Option<switch::Retiring>), Failure> {
    let early = |e| (e, None);
    preflight::check_secrets(sup, spec, events)
        .await
        .map_err(early)?;
    if spec.has_packages() {
        // Finding python3 and uv (processes; once per agent run) overlaps resolve and fetch.
        let s = sup.clone();
        tokio::spawn(async move {
            s.venvs().toolchain().await;
        });
    }
    preflight::check_port(sup, spec).await.map_err(early)?;
    let replicas = spec.start_count(d.running_count());
    preflight::resources(sup, spec, replicas).map_err(early)?;
    preflight::identity(sup, d).await.map_err(early)?;
    let prepared = prepare::prepare(sup, d, spec, number, events)
        .await
        .map_err(early)?;
    let next = match spec.start_script {
        Some(_) => events::START_SCRIPT,
        None => events::START,
    };
    d.deploy_prepared(sup.layout(), &prepared.release, next)
        .await;
    if let Err(e) = start_script::step(sup, d, spec, &prepared, events).await {
        return Err((e, Some(prepared)));
    }
    launch(sup, d, spec, prepared, events).await
}

/// start → health → warmup → switch (behind the node proxy) → commit: the prepared release runs,
/// beside what ran before or in its place.
async fn launch(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    spec: &Spec,
    mut prepared: Prepared,
    events: &Events,
) -> Result<(Outcome, Option<switch::Retiring>), Failure> {
    let mut started = match start::start(sup, d, spec, &prepared, events).await {
        Ok(s) => s,
        Err(e) => return Err((e, Some(prepared))),
    };
    // What it started is on disk before it is waited for: an agent that stops meanwhile
    // stops it when it starts again.
    d.save_or_log(sup.layout()).await;
    let pid = match health::wait(sup, spec, &mut started, events).await {
        Ok(pid) => pid,
        Err(e) => {
            started.abandon(d, sup.layout()).await;
            return Err((e, Some(prepared)));
        }
    };
    if let Err(e) = warmup::run(sup, spec, &started, events).await {
        started.abandon(d, sup.layout()).await;
        return Err((e, Some(prepared)));
    }
    if started.private_port.is_some() {
        let owner = sup.identity_of(d).map(|id| id.uid);
        let ports = started.ports();
        if let Err(e) = switch::switch(sup, &prepared.release, &ports, owner, events).await {
            started.abandon(d, sup.layout()).await;
            return Err((e, Some(prepared)));
        }
        prepared.release.switched_at = Some(crate::clock::now_unix());
    }
    Ok(commit::commit(sup, d, spec, prepared, started, pid).await)
}

/// Runs blocking step work (git, file checks) on a blocking thread.
async fn blocking<T: Send + 'static>(
    step: &'static str,
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::new(step, format!("internal error: {e}")))?
}

/// A commit as the deploy's messages show it.
pub(crate) fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}
