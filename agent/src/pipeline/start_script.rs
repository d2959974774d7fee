//! The start script: `sh SCRIPT` in the workdir with the app's environment, before the
//! command; it must exit 0 (within the configured timeout).

use std::path::Path;
use std::time::Duration;

use super::events::{Events, StepError, START_SCRIPT};
use super::Prepared;
use crate::deployment::Deployment;
use crate::process::{self, Launch};
use crate::spec::Spec;
use crate::supervisor::Supervisor;

/// The start-script step of the release `prepared` (skipped when none is declared).
pub(super) async fn step(
    sup: &Supervisor,
    d: &Deployment,
    spec: &Spec,
    prepared: &Prepared,
    events: &Events,
) -> Result<(), StepError> {
    let Some(script) = &spec.start_script else {
        events.skipped(START_SCRIPT, "no start script declared");
        return Ok(());
    };
    let launch = crate::launch::launch(
        sup,
        d,
        &prepared.release,
        &prepared.dir,
        prepared.private_port,
    )
    .await;
    let build = super::build_limits::BuildCgroup::create(sup, spec, START_SCRIPT)?;
    let mut launch = launch;
    if let Some(b) = &build {
        launch.cgroups = b.dirs();
    }
    let result = events
        .step(START_SCRIPT, format!("sh {}", script.display()), async {
            run(script, &launch, sup.config().start_script_timeout, events).await?;
            Ok(((), format!("{} finished", script.display())))
        })
        .await;
    let what = script.display().to_string();
    super::build_limits::BuildCgroup::end(build, result, START_SCRIPT, &what).await
}

async fn run(
    script: &Path,
    launch: &Launch,
    timeout: Duration,
    events: &Events,
) -> Result<(), StepError> {
    let script_s = script.to_string_lossy();
    let finished = process::run_captured("sh", &[&script_s], launch, timeout, |line| {
        events.output(START_SCRIPT, line)
    })
    .await
    .map_err(|e| StepError::new(START_SCRIPT, format!("cannot run sh {script_s}: {e}")))?;
    if finished.success {
        Ok(())
    } else {
        Err(
            StepError::new(START_SCRIPT, format!("{script_s} {}", finished.summary))
                .with_tail(finished.tail),
        )
    }
}
