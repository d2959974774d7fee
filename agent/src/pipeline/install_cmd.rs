//! Running one install command (uv, pip, apt-get) as part of the packages step: its output
//! streamed as the step's, a failure named with the command and its last lines. Shared by
//! the venv builder and apt, so neither depends on the other.

use super::events::{self, Events, StepError};

/// Runs one installer command (`shown` is how the output names it) with its output as the
/// packages step's lines: Ok once it succeeded, else why, with its last lines.
pub(super) async fn install_command(
    program: &str,
    args: &[&str],
    shown: &str,
    launch: &crate::process::Launch,
    timeout: std::time::Duration,
    events: &Events,
) -> Result<(), StepError> {
    events.output(events::PACKAGES, &format!("$ {shown}"));
    let finished = crate::process::run_captured(program, args, launch, timeout, |line| {
        events.output(events::PACKAGES, line)
    })
    .await
    .map_err(|e| StepError::new(events::PACKAGES, format!("cannot run {program}: {e}")))?;
    if finished.success {
        Ok(())
    } else {
        Err(
            StepError::new(events::PACKAGES, format!("`{shown}` {}", finished.summary))
                .with_tail(finished.tail),
        )
    }
}

/// `/root/.local/bin/uv` is shown as `uv`.
pub(super) fn short_program(program: &str) -> &str {
    std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program)
}
