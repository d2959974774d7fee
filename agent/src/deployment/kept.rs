//! What a deployment's kept releases (the current one, and those still on disk for a
//! rollback) use of the node's shared stores: collection never deletes it.

use super::Deployment;
use crate::store::Layout;

impl Deployment {
    /// The packages hashes of the releases still on disk (or current), for venv GC; and
    /// the store entries of their artifacts (`sha256/<hex>`, `unpacked/<hex>`).
    pub(crate) fn kept(&self, layout: &Layout) -> (Vec<String>, Vec<String>) {
        let s = self.state();
        let kept: Vec<_> = s
            .record
            .releases
            .iter()
            .filter(|r| {
                s.record.current == Some(r.number) || layout.release(&self.name, r.number).exists()
            })
            .collect();
        let venvs = kept
            .iter()
            .filter(|r| !r.packages_hash.is_empty())
            .map(|r| r.packages_hash.clone())
            .collect();
        let artifacts = kept
            .iter()
            .flat_map(|r| &r.spec.artifacts)
            .filter_map(|a| {
                let hex = a.sha256.as_deref()?;
                Some(crate::artifacts::key(hex, a.extract))
            })
            .collect();
        (venvs, artifacts)
    }
}
