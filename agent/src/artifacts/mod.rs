//! The node's artifacts (model and data files) as a service: a store by content hash, so
//! the same file is downloaded once per node whichever release, rollback or deployment
//! asks for it, and an archive is unpacked once.
//!
//! ```text
//! <data>/artifacts/sha256/<hex>     a verified file (0444, the agent's)
//! <data>/artifacts/unpacked/<hex>/  the archive <hex> unpacked (0555 directories, 0444 files)
//! <data>/artifacts/partial/         downloads in progress, kept to be resumed (0700)
//! ```
//!
//! Releases get a symlink at a file artifact's path to its place in the store, and an
//! unpacked archive as a directory of hard links to the store's files ([`mirror`]); apps
//! (their own users) pass through the store's directories (0711) and read, never write. What no kept
//! release uses stays while it fits the venvs' budget ([`gc`]), least recently used first.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::OnceCell;

use crate::leases::{Lease, Leases};
use crate::venvs::KeyedLocks;

mod download;
mod fetch;
pub(crate) mod gc;
mod http;
mod mirror;
mod partial;
pub(crate) mod s3;
mod unpack;

pub(crate) use fetch::{Fetched, Progress};
pub(crate) use gc::Summary;
pub(crate) use mirror::mirror;

pub(crate) struct Artifacts {
    /// `<data>/artifacts`.
    dir: PathBuf,
    /// One fetch (download, unpack) at a time per hash.
    locks: KeyedLocks,
    /// Store entries deploys in progress use.
    leases: Leases,
    /// The TLS client settings with the node's CA certificates (read on first use).
    tls: OnceCell<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>>,
    /// The store as the last collection saw it.
    summary: Mutex<Summary>,
}

/// The key of a store entry: `sha256/<hex>` (the file) or `unpacked/<hex>` (its tree).
pub(crate) fn key(hex: &str, unpacked: bool) -> String {
    if unpacked {
        format!("unpacked/{hex}")
    } else {
        format!("sha256/{hex}")
    }
}

impl Artifacts {
    pub(crate) fn new(dir: PathBuf) -> Artifacts {
        Artifacts {
            dir,
            locks: KeyedLocks::default(),
            leases: Leases::default(),
            tls: OnceCell::new(),
            summary: Mutex::default(),
        }
    }

    /// Where the entry `key` lives.
    pub(crate) fn entry(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn partial_dir(&self) -> PathBuf {
        self.dir.join("partial")
    }

    /// Holds entry `key` against collection until the lease is dropped.
    pub(crate) fn lease(&self, key: &str) -> Lease {
        self.leases.lease(key)
    }

    /// The store's size of entry `key` when it is there (a plan's "reused"). Blocking.
    pub(crate) fn stored_bytes(&self, key: &str) -> Option<u64> {
        let path = self.entry(key);
        let meta = std::fs::symlink_metadata(&path).ok()?;
        Some(if meta.is_dir() {
            crate::venvs::size_of(&path)
        } else {
            meta.len()
        })
    }

    /// Creates the store's directories (the agent's; apps pass through to what they are
    /// given). Blocking.
    fn ensure_dirs(&self) -> std::io::Result<()> {
        use crate::fsmode::{create_dir, PASS_THROUGH_DIR, PRIVATE_DIR};
        create_dir(&self.dir, PASS_THROUGH_DIR)?;
        create_dir(&self.dir.join("sha256"), PASS_THROUGH_DIR)?;
        create_dir(&self.dir.join("unpacked"), PASS_THROUGH_DIR)?;
        create_dir(&self.partial_dir(), PRIVATE_DIR)
    }

    /// The TLS settings for https:// downloads: the node's CA certificates, with ring (as
    /// the agent's own TLS).
    async fn tls(&self) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| async {
                tokio::task::spawn_blocking(http::client_config)
                    .await
                    .unwrap_or_else(|e| Err(format!("internal error: {e}")))
            })
            .await
            .clone()
    }

    /// The store as the last collection saw it (for `deployctl nodes`).
    pub(crate) fn summary(&self) -> Summary {
        *self.summary.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks a store entry used now (its mtime: collection goes least recently used first).
/// Blocking; a failure only makes it look older.
fn touch(path: &Path) {
    let touched = std::fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), error = %e, "cannot mark the artifact used");
    }
}

/// Deletes a store tree whose directories are read-only (0555). Blocking.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    let mut todo = vec![path.to_path_buf()];
    while let Some(d) = todo.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(e.path());
                }
            }
        }
    }
    std::fs::remove_dir_all(path)
}
