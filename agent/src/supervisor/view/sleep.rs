//! The state of a deployment that sleeps (after its idle timeout) or is waking, and why.

use std::time::Duration;

use crate::deployment::Snapshot;
use crate::instance::State;

/// A deployment that sleeps or is waking (with no instance yet), and why.
pub(super) fn sleep_state(s: &Snapshot) -> Option<(State, String)> {
    if s.instance.is_some() {
        return None;
    }
    let failed = s.sleep.failed.as_ref().map(|(at, why)| {
        format!(
            "; its last wake failed {} ago: {why}",
            humantime::format_duration(Duration::from_secs(at.elapsed().as_secs()))
        )
    });
    if let Some(since) = s.sleep.waking {
        return Some((
            State::Waking,
            format!(
                "a request came while it slept: its release is starting ({}s so far)",
                since.elapsed().as_secs()
            ),
        ));
    }
    if !s.sleeping {
        return None;
    }
    let wakes = match (s.sleep.wakes, s.sleep.last_wake) {
        (0, _) | (_, None) => String::new(),
        (n, Some(took)) => format!(
            " (woken {n} times since the agent started, the last in {:.1}s)",
            took.as_secs_f64()
        ),
    };
    Some((
        State::Sleeping,
        format!(
            "stopped after a while without a request; the next request wakes it{wakes}{}",
            failed.unwrap_or_default()
        ),
    ))
}
