//! After a failed deploy: the failed release is recorded and its directory deleted, and
//! the release that served before keeps serving, started again if it had been stopped to
//! free its port. (The user's `deployctl rollback` is another thing: a new deploy of an
//! older release.)

use std::sync::Arc;

use super::events::{Outcome, StepError};
use super::Prepared;
use crate::deployment::Deployment;
use crate::instance::{Instance, State};
use crate::procstat::ProcId;
use crate::store::{ReleaseRecord, ReleaseResult};
use crate::supervisor::Supervisor;

/// What failed: a deploy of a new release (its number), or a restart of the current one.
#[derive(Debug, Clone, Copy)]
pub(super) enum Attempt {
    Deploy(u32),
    Restart,
}

pub(super) async fn keep_previous(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    err: StepError,
    prepared: Option<Prepared>,
    attempt: Attempt,
) -> Outcome {
    let mut outcome = Outcome {
        ok: false,
        failed_step: err.step.to_string(),
        reason: err.reason.clone(),
        output_tail: err.tail.clone(),
        ..Default::default()
    };
    if let Some(p) = prepared {
        let mut release = p.release;
        release.result = ReleaseResult::failed(err.step, first_line(&err.reason));
        outcome.commit = release.commit.clone();
        outcome.git_ref = release.git_ref.clone();
        let _ = tokio::fs::remove_dir_all(&p.dir).await;
        d.record_failure(release);
    }
    if let Some(current) = d.current() {
        outcome.release = current.number;
        outcome.kept_release = current.number;
        match d.instance() {
            Some(inst) => outcome.kept_healthy = inst.snapshot().state == State::Healthy,
            None => {
                // Stopped for the port (or never running): started again, a new process.
                let pid = restart_kept(sup, d, &current).await;
                outcome.kept_healthy = pid.is_some();
                outcome.kept_restarted = true;
                outcome.kept_pid = pid.unwrap_or(0);
            }
        }
        note_failure(d, &err, attempt, &outcome);
        d.save_or_log(sup.layout()).await;
    }
    outcome
}

/// Starts the kept release again and waits for it to be healthy: its new pid.
async fn restart_kept(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
) -> Option<u32> {
    let cfg = crate::launch::instance_config(sup, d, release, d.private_port(), 0).await;
    let (instance, ready) = Instance::start(cfg);
    let instance = Arc::new(instance);
    d.swap_instance(Some(instance.clone()));
    if let Some(port) = d.private_port() {
        // It had left the node proxy for a release that failed: routed again (its first
        // instance; its replicas were stopped).
        for r in d.forget_replicas() {
            r.stop().await;
        }
        let route = crate::launch::route(sup, release, &[port]);
        if let Err(e) = sup.proxy().set_route(route).await {
            tracing::error!(deployment = %release.spec.name, error = %e, "cannot route the port to the kept release");
        }
    }
    match ready.await {
        Ok(Ok(pid)) => {
            d.set_process(
                release.number,
                ProcId::of(pid),
                instance.snapshot().tracking,
            );
            Some(pid)
        }
        Ok(Err(f)) => {
            tracing::error!(deployment = %release.spec.name, reason = %f.reason, "previous release did not come back");
            None
        }
        Err(_) => None,
    }
}

/// The failure is the deployment's last event, and a failed deploy is kept until a newer
/// release goes live: the page and `status` say why the current release still serves.
fn note_failure(d: &Deployment, err: &StepError, attempt: Attempt, outcome: &Outcome) {
    let why = first_line(&err.reason);
    let kept = if outcome.kept_healthy {
        format!("release {} kept serving", outcome.kept_release)
    } else {
        format!("release {} kept, NOT healthy", outcome.kept_release)
    };
    match attempt {
        Attempt::Deploy(number) => d.note_failed_deploy(
            number,
            err.step,
            why,
            format!(
                "deploy of release {number} failed at {}: {why}; {kept}",
                err.step
            ),
        ),
        Attempt::Restart => d.note_event(format!("restart failed at {}: {why}; {kept}", err.step)),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
