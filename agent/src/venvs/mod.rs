//! The node's Python venvs as a service: the toolchain that builds them (found once), one
//! builder at a time per venv key, the venvs deploys in progress use (leases), and the
//! collection of unused ones within the configured budget ([`gc`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::config::{Config, InstallerMode};

mod bytecode;
mod gc;
pub(crate) mod toolchain;

pub(crate) use gc::{evictions, remove as gc_remove, size_of, touch, Scan, Summary, Unused};
pub(crate) use toolchain::{Installer, Toolchain};

/// Written into a venv once it is complete: one without it is never used (or collected
/// while a build may still write it).
pub(crate) const COMPLETE_MARKER: &str = ".deploy-agent-complete";

/// A lock per key (a repository mirror, a venv key): one user at a time per key.
#[derive(Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub(crate) fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }

    /// Whether someone holds the lock for `key` right now.
    pub(crate) fn is_locked(&self, key: &str) -> bool {
        let map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_some_and(|m| m.try_lock().is_err())
    }
}

/// A venv in use by a deploy in progress; released on drop.
pub(crate) type VenvLease = crate::leases::Lease;

pub(crate) struct Venvs {
    dir: PathBuf,
    tools_dir: PathBuf,
    installer: InstallerMode,
    toolchain: OnceCell<Toolchain>,
    /// One build at a time per venv key.
    builders: KeyedLocks,
    leases: crate::leases::Leases,
    /// Bytecode compiles running in the background.
    compiles: bytecode::Compiles,
    /// The venvs as the last collection saw them.
    summary: Mutex<Summary>,
}

impl Venvs {
    pub(crate) fn new(config: &Config, dir: PathBuf, tools_dir: PathBuf) -> Venvs {
        Venvs {
            dir,
            tools_dir,
            installer: config.installer,
            toolchain: OnceCell::new(),
            builders: KeyedLocks::default(),
            leases: Default::default(),
            compiles: bytecode::Compiles::default(),
            summary: Mutex::default(),
        }
    }

    /// python3 and uv, found (or uv installed) on first use.
    pub(crate) async fn toolchain(&self) -> &Toolchain {
        self.toolchain
            .get_or_init(|| Toolchain::detect(self.installer, &self.tools_dir))
            .await
    }

    /// Whether the toolchain can be found without installing anything (worth doing early).
    pub(crate) fn toolchain_is_local(&self) -> bool {
        Toolchain::detects_locally(self.installer, &self.tools_dir)
    }

    /// The lock a build of venv `key` holds.
    pub(crate) fn builder(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.builders.get(key)
    }

    /// Marks a venv as used by a deploy in progress (so collection leaves it alone) until
    /// the returned lease is dropped.
    pub(crate) fn lease(&self, key: &str) -> VenvLease {
        self.leases.lease(key)
    }

    /// Before a collection: stops the bytecode compiles of the venvs that may go (nothing
    /// may write into a venv while it is deleted; a later use compiles again).
    pub(crate) async fn stop_compiles(&self, keep: &HashSet<String>) {
        let leased = self.leases.held();
        self.compiles
            .stop(|k| !keep.contains(k) && leased.get(k).is_none_or(|n| *n == 0))
            .await;
    }

    /// The venvs outside `keep` that no deploy in progress holds or builds: what may go.
    /// Blocking (sizes them).
    pub(crate) fn scan(&self, keep: &HashSet<String>) -> gc::Scan {
        let leased = self.leases.held();
        gc::scan(&self.dir, keep, |k| {
            leased.get(k).is_some_and(|n| *n > 0) || self.builders.is_locked(k)
        })
    }

    /// Deletes the leftovers of `scan` and its unused venvs in `evict`; remembers what
    /// stays for `deployctl nodes`. What it removed. Blocking.
    pub(crate) fn remove(&self, scan: &gc::Scan, evict: &HashSet<String>) -> Vec<String> {
        let (removed, unused, unused_bytes) = gc::remove(&self.dir, scan, evict, gc::delete);
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Summary {
            in_use: scan.in_use,
            unused,
            unused_bytes,
        };
        removed
    }

    /// Compiles venv `key`'s bytecode in the background (see [`bytecode`]).
    pub(crate) fn compile_later(&self, key: &str) {
        self.compiles.start(key, self.dir.join(key));
    }

    /// The venvs as the last collection saw them.
    pub(crate) fn summary(&self) -> Summary {
        *self.summary.lock().unwrap_or_else(|p| p.into_inner())
    }
}
