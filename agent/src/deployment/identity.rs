//! A deployment's own Unix identity (see [`crate::identity`]): kept in its record for its
//! whole life, so releases, replicas, restarts and an agent restart all run as it.

use super::Deployment;
use crate::identity::Identity;

impl Deployment {
    /// Its own user and group, once it has one.
    pub(crate) fn identity(&self) -> Option<Identity> {
        self.state().record.identity.clone()
    }

    /// Gives it `id` (made for it, or made again with the recorded uid). The caller saves.
    pub(crate) fn set_identity(&self, id: Identity) {
        let mut s = self.state();
        if s.record.identity.as_ref() != Some(&id) {
            s.record.identity = Some(id);
            s.revision += 1;
        }
    }
}
