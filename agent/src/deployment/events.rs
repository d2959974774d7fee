//! What happened to a deployment last, in its record (so it survives agent restarts): a
//! restart by its policy and why, a deploy, a deploy that failed while the current release
//! kept serving.

use super::Deployment;
use crate::store::NodeEvent;

impl Deployment {
    /// Something happened to it: `text` is the last event from now on.
    pub(crate) fn note_event(&self, text: impl Into<String>) {
        let mut s = self.state();
        s.record.last_event = Some(NodeEvent {
            at: crate::clock::now_unix(),
            text: text.into(),
        });
        s.revision += 1;
    }
}
