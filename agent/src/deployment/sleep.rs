//! A deployment's sleep: stopped after `idle_timeout` without a request (the record says
//! `sleeping`, persisted, so an agent that starts again leaves it so), woken by the next
//! request (a wake in progress, and the last one that failed, for `status` and for the
//! node proxy's answers meanwhile).

use std::time::{Duration, Instant};

use super::Deployment;
use crate::store::{Layout, NodeEvent};

/// How a deployment's sleep goes, beside the record.
#[derive(Debug, Default, Clone)]
pub(crate) struct SleepState {
    /// A wake in progress, since.
    pub waking: Option<Instant>,
    /// The last wake that failed: when, and why.
    pub failed: Option<(Instant, String)>,
    /// A deploy (or `env set`) of a sleeping deployment: once its release is live and
    /// checked, it sleeps again.
    pub sleep_soon: bool,
    /// Wakes since the agent started, and how long the last one took.
    pub wakes: u64,
    pub last_wake: Option<Duration>,
}

impl Deployment {
    /// Whether its app sleeps (stopped for idling; the next request wakes it).
    pub(crate) fn is_sleeping(&self) -> bool {
        self.state().record.sleeping
    }

    /// Its sleep as it is now.
    pub(crate) fn sleep_state(&self) -> SleepState {
        self.state().sleep.clone()
    }

    /// Its app was stopped for idling (its instances taken out with
    /// [`Deployment::stop_for_removal`]): it sleeps from now on. Persisted.
    pub(crate) async fn fell_asleep(&self, layout: &Layout, why: String) {
        {
            let mut s = self.state();
            s.record.sleeping = true;
            s.record.private_port = None;
            s.sleep.sleep_soon = false;
            s.record.last_event = Some(NodeEvent {
                at: crate::clock::now_unix(),
                text: why,
            });
            s.revision += 1;
        }
        self.save_or_log(layout).await;
    }

    /// A request came for it: a wake begins (under the deployment's lock).
    pub(crate) fn wake_began(&self) {
        let mut s = self.state();
        s.sleep.waking = Some(Instant::now());
        // A deploy that failed while it slept does not send it back to sleep.
        s.sleep.sleep_soon = false;
    }

    /// The wake that began is over: how long it took, or why it failed.
    pub(crate) fn wake_ended(&self, failure: Option<String>) -> Duration {
        let mut s = self.state();
        let took = s
            .sleep
            .waking
            .take()
            .map(|t| t.elapsed())
            .unwrap_or_default();
        match failure {
            Some(why) => s.sleep.failed = Some((Instant::now(), why)),
            None => {
                s.sleep.failed = None;
                s.sleep.wakes += 1;
                s.sleep.last_wake = Some(took);
            }
        }
        took
    }

    /// The last failed wake's reason and how much of `hold` is left of it, while it holds.
    pub(crate) fn wake_failure_within(&self, hold: Duration) -> Option<(String, Duration)> {
        let s = self.state();
        let (at, why) = s.sleep.failed.as_ref()?;
        let left = hold.checked_sub(at.elapsed())?;
        Some((why.clone(), left))
    }

    /// Whether it is to sleep at once (a deploy of a sleeping deployment went live); once.
    pub(crate) fn take_sleep_soon(&self) -> bool {
        std::mem::take(&mut self.state().sleep.sleep_soon)
    }
}
