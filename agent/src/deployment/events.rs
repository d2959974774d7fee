//! What happened to a deployment last, in its record (so it survives agent restarts): a
//! restart by its policy and why, a deploy, a deploy that failed while the current release
//! kept serving.

use super::Deployment;
use crate::store::{FailedDeploy, NodeEvent};

impl Deployment {
    /// Something happened to it: `text` is the last event from now on.
    pub(crate) fn note_event(&self, text: impl Into<String>) {
        let mut s = self.state();
        s.record.last_event = Some(NodeEvent {
            at: crate::clock::now_unix(),
            text: text.into(),
        });
        s.generation += 1;
    }

    /// Release `release` went live (`text` says how): a deploy that failed before it is
    /// history now.
    pub(crate) fn note_live(&self, release: u32, text: impl Into<String>) {
        self.note_event(text);
        let mut s = self.state();
        if s.record
            .failed_deploy
            .as_ref()
            .is_some_and(|f| f.release <= release)
        {
            s.record.failed_deploy = None;
            s.generation += 1;
        }
    }

    /// A deploy of `release` failed at `step` (`reason`: its first line) while the current
    /// release kept serving; `text` says so as the last event.
    pub(crate) fn note_failed_deploy(&self, release: u32, step: &str, reason: &str, text: String) {
        self.note_event(text);
        let mut s = self.state();
        s.record.failed_deploy = Some(FailedDeploy {
            at: crate::clock::now_unix(),
            release,
            step: step.to_string(),
            reason: reason.to_string(),
        });
        s.generation += 1;
    }
}
