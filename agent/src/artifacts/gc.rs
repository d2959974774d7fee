//! Which artifacts the node keeps. An entry of the store (`sha256/<hex>`, `unpacked/<hex>`)
//! that a kept release links to, or a deploy in progress holds, is in use and never
//! deleted; the others are unused and share the venvs' budget (`venv_keep_bytes`,
//! `venv_keep_age`): past it, the least recently used go first (see
//! [`crate::venvs::evictions`]). A partial download is kept the same way (to be resumed),
//! unless a fetch is writing it; a half-unpacked archive nobody unpacks is a leftover.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Artifacts;
use crate::venvs::{Scan, Unused};

/// The store as the last collection saw it (for `deployctl nodes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub in_use: u32,
    pub in_use_bytes: u64,
    pub unused: u32,
    pub unused_bytes: u64,
}

/// A store entry's size on disk.
fn bytes(path: &Path, meta: &std::fs::Metadata) -> u64 {
    if meta.is_dir() {
        crate::venvs::size_of(path)
    } else {
        meta.blocks() * 512
    }
}

impl Artifacts {
    /// The entries outside `keep` that no deploy in progress holds or fetches: what may
    /// go. Blocking (sizes them).
    pub(crate) fn scan(&self, keep: &HashSet<String>) -> (Scan, u64) {
        let leased = self.leases.held();
        let mut scan = Scan::default();
        let mut in_use_bytes = 0;
        for sub in ["sha256", "unpacked", "partial"] {
            let Ok(entries) = std::fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let key = format!("{sub}/{name}");
                let path = entry.path();
                let Ok(meta) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                // A partial file or unpacking directory is named after its hash.
                let hex = name.split(['.', '-']).next().unwrap_or_default();
                let fetching = self.locks.is_locked(hex);
                if keep.contains(&key) || leased.get(&key).is_some_and(|n| *n > 0) {
                    scan.in_use += 1;
                    in_use_bytes += bytes(&path, &meta);
                } else if sub == "partial" && name.starts_with("unpinned-") {
                    // A fetch's own until it ends (it holds no lock: its hash is unknown).
                    if !is_recent(&meta) {
                        scan.leftovers.push(key);
                    }
                } else if sub == "partial" && name.contains(".unpacking-") {
                    if !fetching {
                        scan.leftovers.push(key);
                    }
                } else if !fetching {
                    scan.unused.push(Unused {
                        key,
                        bytes: bytes(&path, &meta),
                        last_used: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    });
                }
            }
        }
        (scan, in_use_bytes)
    }

    /// Deletes the leftovers of `scan` and its unused entries in `evict`; remembers what
    /// stays for `deployctl nodes`. What it removed. Blocking.
    pub(crate) fn remove(
        &self,
        scan: &Scan,
        in_use_bytes: u64,
        evict: &HashSet<String>,
    ) -> Vec<String> {
        let (removed, unused, unused_bytes) =
            crate::venvs::gc_remove(&self.dir, scan, evict, super::remove_tree);
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Summary {
            in_use: scan.in_use,
            in_use_bytes,
            unused,
            unused_bytes,
        };
        removed
    }
}

/// Changed in the last day: an unpinned download another agent run may still write
/// (this one holds no lock for it).
fn is_recent(meta: &std::fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age.as_secs() < 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_kept_releases_use_or_deploys_hold_is_never_a_candidate() {
        let dir = std::env::temp_dir().join(format!("artifacts-gc-{}", std::process::id()));
        let _ = super::super::remove_tree(&dir);
        let store = Artifacts::new(dir.clone());
        store.ensure_dirs().unwrap();
        for name in ["sha256/aa", "sha256/bb", "sha256/cc", "partial/dd.part"] {
            std::fs::write(dir.join(name), vec![1u8; 5000]).unwrap();
        }
        std::fs::create_dir_all(dir.join("unpacked/aa/model")).unwrap();
        std::fs::create_dir_all(dir.join("partial/ee.unpacking-1-2")).unwrap();
        let keep: HashSet<String> = ["unpacked/aa".to_string()].into();
        let _held = store.lease("sha256/bb");
        let (scan, in_use_bytes) = store.scan(&keep);
        let mut unused: Vec<_> = scan.unused.iter().map(|u| u.key.as_str()).collect();
        unused.sort();
        assert_eq!(unused, ["partial/dd.part", "sha256/aa", "sha256/cc"]);
        assert_eq!(scan.leftovers, ["partial/ee.unpacking-1-2"]);
        assert_eq!(scan.in_use, 2);
        assert!(in_use_bytes >= 5000, "{in_use_bytes}");
        // Everything unused goes when the budget is nil; the leftovers always do.
        let evict = crate::venvs::evictions(
            scan.unused.clone(),
            std::time::SystemTime::now(),
            0,
            std::time::Duration::from_secs(3600),
        )
        .into_iter()
        .collect();
        let removed = store.remove(&scan, in_use_bytes, &evict);
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(dir.join("unpacked/aa/model").is_dir() && dir.join("sha256/bb").is_file());
        assert!(!dir.join("sha256/cc").exists() && !dir.join("partial/ee.unpacking-1-2").exists());
        assert_eq!(store.summary().in_use, 2);
        super::super::remove_tree(&dir).unwrap();
    }
}
