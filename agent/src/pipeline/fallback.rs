//! After a failed deploy: the failed release is recorded and its directory deleted, and
//! the release that served before keeps serving, started again if it had been stopped to
//! free its port. (The user's `deployctl rollback` is another thing: a new deploy of an
//! older release.)

use std::sync::Arc;

use super::events::{Outcome, StepError};
use super::Prepared;
use crate::deployment::{Deployment, Failure};
use crate::instance::{Instance, State};
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
    let failed = match prepared {
        Some(p) => {
            let mut release = p.release;
            release.result = ReleaseResult::failed(err.step, first_line(&err.reason));
            outcome.commit = release.commit.clone();
            outcome.git_ref = release.git_ref.clone();
            let _ = tokio::fs::remove_dir_all(&p.dir).await;
            Some(release)
        }
        None => None,
    };
    if let Some(current) = d.current() {
        outcome.release = current.number;
        outcome.kept_release = current.number;
        match d.instance() {
            Some(inst) => outcome.kept_healthy = inst.snapshot().state == State::Healthy,
            // It sleeps on: the next request wakes it (nothing was stopped for the port).
            None if d.is_sleeping() => {}
            None => {
                // Stopped for the port (or never running): started again, a new process.
                let pid = restart_kept(sup, d, &current).await;
                outcome.kept_healthy = pid.is_some();
                outcome.kept_restarted = true;
                outcome.kept_pid = pid.unwrap_or(0);
            }
        }
        let failure = failure(&err, attempt, &outcome);
        d.failed(sup.layout(), failed, failure).await;
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
    d.serve_from_start(instance.clone());
    if let Some(port) = d.private_port() {
        // It had left the node proxy for a release that failed: routed again (its first
        // instance; its replicas were stopped).
        for r in d.take_replicas() {
            r.stop().await;
        }
        let route = sup.route(d, release, &[port]);
        if let Err(e) = sup.proxy().set_route(route).await {
            tracing::error!(deployment = %release.spec.name, error = %e, "cannot route the port to the kept release");
        }
    }
    match ready.await {
        Ok(Ok(pid)) => {
            d.kept_running(release.number, pid, &instance);
            Some(pid)
        }
        Ok(Err(f)) => {
            tracing::error!(deployment = %release.spec.name, reason = %f.reason, "previous release did not come back");
            None
        }
        Err(_) => None,
    }
}

/// The failure as the deployment's last event; a failed deploy is kept until a newer
/// release goes live: the page and `status` say why the current release still serves.
fn failure(err: &StepError, attempt: Attempt, outcome: &Outcome) -> Failure {
    let why = first_line(&err.reason);
    let kept = if outcome.kept_healthy {
        format!("release {} kept serving", outcome.kept_release)
    } else {
        format!("release {} kept, NOT healthy", outcome.kept_release)
    };
    match attempt {
        Attempt::Deploy(number) => Failure::Deploy {
            number,
            step: err.step.to_string(),
            reason: why.to_string(),
            text: format!(
                "deploy of release {number} failed at {}: {why}; {kept}",
                err.step
            ),
        },
        Attempt::Restart => Failure::Restart {
            text: format!("restart failed at {}: {why}; {kept}", err.step),
        },
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
