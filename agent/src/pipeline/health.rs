//! health: waits until the new release's instance says it is healthy (its health check
//! passed, see [`crate::health`]) or that it never will be (it exited, or the health
//! timeout passed).

use std::time::Instant;

use super::events::{self, Events, StepError};
use super::start::Started;
use crate::instance::StartFailure;
use crate::spec::Spec;
use crate::supervisor::Supervisor;

/// The new release's pid once healthy.
pub(super) async fn wait(
    sup: &Supervisor,
    spec: &Spec,
    started: &mut Started,
    events: &Events,
) -> Result<u32, StepError> {
    let target = match &spec.health.path {
        Some(p) => format!("GET {}{p}", sup.app_url(spec.port)),
        None => format!("TCP connect to {}:{}", sup.config().app_host, spec.port),
    };
    let began = Instant::now();
    events.emit(
        events::HEALTH,
        events::Phase::Started,
        format!(
            "{target} (up to {})",
            humantime::format_duration(spec.health.timeout)
        ),
        Default::default(),
    );
    let result = (&mut started.ready).await.unwrap_or_else(|_| {
        Err(StartFailure {
            reason: "the app's supervisor ended unexpectedly".into(),
            tail: vec![],
        })
    });
    match result {
        Ok(pid) => {
            events.emit(
                events::HEALTH,
                events::Phase::Done,
                started.instance.snapshot().last_health,
                began.elapsed(),
            );
            Ok(pid)
        }
        Err(failure) => {
            events.emit(
                events::HEALTH,
                events::Phase::Failed,
                failure.reason.clone(),
                began.elapsed(),
            );
            Err(StepError::new(events::HEALTH, failure.reason).with_tail(failure.tail))
        }
    }
}
