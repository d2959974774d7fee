//! One artifact into the store: found there (reused), or downloaded, verified against its
//! pinned hash and moved in; an archive to unpack is unpacked once, beside it. One fetch at
//! a time per hash, so two deploys that want the same file download it once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{download, key, touch, unpack, Artifacts};
use crate::identity::Identity;
use crate::leases::Lease;
use crate::spec::Artifact;

/// How far a fetch is, for the step's progress lines.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Bytes in the partial file.
    pub done: AtomicU64,
    /// The whole file's size, when the server said (0: not known).
    pub total: AtomicU64,
    /// Bytes this fetch transferred.
    pub transferred: AtomicU64,
    /// Where a download was first resumed (a partial file of an earlier deploy, or a
    /// broken transfer); 0: not resumed.
    pub resumed_at: AtomicU64,
}

/// An artifact in the store, held for the deploy.
pub(crate) struct Fetched {
    pub sha256: String,
    /// The store entry the release links to.
    pub key: String,
    /// The file's size (an archive's, for an unpacked one).
    pub bytes: u64,
    /// Downloaded now: bytes transferred and how long it took.
    pub downloaded: Option<(u64, Duration)>,
    /// Where the download was resumed (an earlier deploy's partial file, a broken
    /// transfer).
    pub resumed_at: Option<u64>,
    /// Unpacked now: its files and directories.
    pub unpacked: Option<u64>,
    pub lease: Lease,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Artifacts {
    /// Puts `a` in the store (or finds it there) and holds it for the deploy.
    pub(crate) async fn fetch(
        self: Arc<Self>,
        a: Artifact,
        // Who reads a file:// URL: the deployment's user (`None`: the agent, as apps).
        reader: Option<Identity>,
        progress: Arc<Progress>,
    ) -> Result<Fetched, String> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.ensure_dirs())
            .await
            .map_err(|e| format!("internal error: {e}"))?
            .map_err(|e| {
                format!(
                    "cannot create the artifact store {}: {e}",
                    self.dir.display()
                )
            })?;
        match &a.sha256 {
            Some(hex) => self.pinned(&a, hex, reader.as_ref(), &progress).await,
            None => self.unpinned(&a, reader.as_ref(), &progress).await,
        }
    }

    async fn pinned(
        &self,
        a: &Artifact,
        hex: &str,
        reader: Option<&Identity>,
        progress: &Progress,
    ) -> Result<Fetched, String> {
        let lock = self.locks.get(hex);
        let _one_at_a_time = lock.lock().await;
        let wanted = key(hex, a.extract);
        let lease = self.lease(&wanted);
        let file = self.entry(&key(hex, false));
        let (mut downloaded, mut resumed_at) = (None, None);
        if let Some(bytes) = self.reuse(&wanted, &file).await {
            return Ok(Fetched {
                sha256: hex.to_string(),
                key: wanted,
                bytes,
                downloaded,
                resumed_at,
                unpacked: None,
                lease,
            });
        }
        if !file.exists() {
            let part = self.partial_dir().join(format!("{hex}.part"));
            let d = download::download(self, &a.url, &part, true, reader, progress)
                .await
                .map_err(|e| format!("{}: {e}", a.shown_url()))?;
            if d.sha256 != hex {
                // Not the file pinned: nothing of it is worth resuming.
                let _ = tokio::fs::remove_file(&part).await;
                return Err(format!(
                    "sha256 mismatch for {}: expected {hex}, got {} ({} downloaded); nothing was stored — fix sha256 or the URL",
                    a.shown_url(),
                    d.sha256,
                    crate::capacity::bytes(d.bytes)
                ));
            }
            self.keep(&part, &file).await?;
            downloaded = Some((d.transferred, d.took));
            resumed_at = d.resumed_at;
        }
        let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let unpacked = if a.extract {
            Some(self.unpack(hex, &file).await?)
        } else {
            None
        };
        Ok(Fetched {
            sha256: hex.to_string(),
            key: wanted,
            bytes,
            downloaded,
            resumed_at,
            unpacked,
            lease,
        })
    }

    /// An artifact without a hash (development): downloaded every time, stored by the
    /// hash it turns out to have.
    async fn unpinned(
        &self,
        a: &Artifact,
        reader: Option<&Identity>,
        progress: &Progress,
    ) -> Result<Fetched, String> {
        let part = self.partial_dir().join(format!(
            "unpinned-{}-{}.part",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let got = download::download(self, &a.url, &part, false, reader, progress).await;
        let d = match got {
            Ok(d) => d,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(format!("{}: {e}", a.shown_url()));
            }
        };
        let hex = d.sha256.clone();
        let lock = self.locks.get(&hex);
        let _one_at_a_time = lock.lock().await;
        let wanted = key(&hex, a.extract);
        let lease = self.lease(&wanted);
        let file = self.entry(&key(&hex, false));
        if file.exists() {
            let _ = tokio::fs::remove_file(&part).await;
        } else {
            self.keep(&part, &file).await?;
        }
        let unpacked = if a.extract && !self.entry(&wanted).exists() {
            Some(self.unpack(&hex, &file).await?)
        } else {
            None
        };
        Ok(Fetched {
            sha256: hex,
            key: wanted,
            bytes: d.bytes,
            downloaded: Some((d.transferred, d.took)),
            resumed_at: None,
            unpacked,
            lease,
        })
    }

    /// The size of entry `wanted` when the store has it (marked used now).
    async fn reuse(&self, wanted: &str, file: &Path) -> Option<u64> {
        let (entry, file) = (self.entry(wanted), file.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let meta = std::fs::symlink_metadata(&entry).ok()?;
            touch(&entry);
            if meta.is_dir() {
                // An unpacked archive: its archive's size when that is kept too.
                touch(&file);
                Some(
                    std::fs::metadata(&file)
                        .map(|m| m.len())
                        .unwrap_or_else(|_| crate::venvs::size_of(&entry)),
                )
            } else {
                Some(meta.len())
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Moves a verified download into the store: read-only, the agent's.
    async fn keep(&self, part: &Path, file: &Path) -> Result<(), String> {
        let (part, file) = (part.to_path_buf(), file.to_path_buf());
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o444))?;
            std::fs::rename(&part, &file)
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?
        .map_err(|e| format!("cannot move the download into the store: {e}"))
    }

    /// Unpacks archive `file` (hash `hex`) into the store once: what it holds.
    async fn unpack(&self, hex: &str, file: &Path) -> Result<u64, String> {
        let tree = self.entry(&key(hex, true));
        let tmp = self.partial_dir().join(format!(
            "{hex}.unpacking-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let result = unpack::unpack(&file, &tmp).and_then(|n| {
                std::fs::rename(&tmp, &tree)
                    .map(|()| n)
                    .map_err(|e| format!("cannot move the unpacked archive into the store: {e}"))
            });
            if result.is_err() {
                let _ = super::remove_tree(&tmp);
            }
            result
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?
    }
}
