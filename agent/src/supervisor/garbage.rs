//! What the node keeps of what no kept release uses: Python venvs and artifacts share one
//! budget (`venv_keep_bytes` in all, none older than `venv_keep_age` since its last use);
//! past it, the least recently used of either go first. What a kept release (current, or
//! still on disk for a rollback) uses, or a deploy in progress holds, is never deleted.

use std::collections::HashSet;
use std::time::SystemTime;

use super::Supervisor;

impl Supervisor {
    /// Collects unused venvs and artifacts to the budget. What it removed.
    pub(crate) async fn collect_garbage(&self) -> Vec<String> {
        let layout = self.layout.clone();
        let deployments = self.registry().all();
        // Whether a release directory is still there: a little file-system work.
        let (venvs, artifacts) = tokio::task::spawn_blocking(move || {
            let mut venvs = HashSet::new();
            let mut artifacts = HashSet::new();
            for d in &deployments {
                let (v, a) = d.kept(&layout);
                venvs.extend(v);
                artifacts.extend(a);
            }
            (venvs, artifacts)
        })
        .await
        .unwrap_or_default();
        self.venvs.stop_compiles(&venvs).await;
        let (v, a) = (self.venvs.clone(), self.artifacts.clone());
        let (keep_bytes, keep_age) = (self.config.venv_keep_bytes, self.config.venv_keep_age);
        let work = move || {
            let venv_scan = v.scan(&venvs);
            let (artifact_scan, in_use_bytes) = a.scan(&artifacts);
            let unused = venv_scan
                .unused
                .iter()
                .chain(&artifact_scan.unused)
                .cloned()
                .collect();
            // Keys cannot clash: an artifact's has a '/', a venv's does not.
            let evict: HashSet<String> =
                crate::venvs::evictions(unused, SystemTime::now(), keep_bytes, keep_age)
                    .into_iter()
                    .collect();
            let mut removed = v.remove(&venv_scan, &evict);
            removed.extend(a.remove(&artifact_scan, in_use_bytes, &evict));
            removed
        };
        let removed = tokio::task::spawn_blocking(work).await.unwrap_or_default();
        if !removed.is_empty() {
            tracing::info!(removed = ?removed, "removed unused environments and artifacts");
        }
        removed
    }
}
