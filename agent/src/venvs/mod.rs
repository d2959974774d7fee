//! The node's Python venvs as a service: the toolchain that builds them (found once), one
//! builder at a time per venv key, the venvs deploys in progress use (leases), and the
//! collection of unused ones within the configured budget ([`gc`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::config::{Config, InstallerMode};

mod bytecode;
mod gc;
pub(crate) mod toolchain;

pub(crate) use gc::{touch, Summary};
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
    fn is_locked(&self, key: &str) -> bool {
        let map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_some_and(|m| m.try_lock().is_err())
    }
}

type Leases = Arc<Mutex<HashMap<String, usize>>>;

fn leases(l: &Leases) -> MutexGuard<'_, HashMap<String, usize>> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// A venv in use by a deploy in progress; released on drop.
pub(crate) struct VenvLease {
    leases: Leases,
    key: String,
}

impl Drop for VenvLease {
    fn drop(&mut self) {
        let mut map = leases(&self.leases);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

pub(crate) struct Venvs {
    dir: PathBuf,
    tools_dir: PathBuf,
    installer: InstallerMode,
    keep_bytes: u64,
    keep_age: Duration,
    toolchain: OnceCell<Toolchain>,
    /// One build at a time per venv key.
    builders: KeyedLocks,
    leases: Leases,
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
            keep_bytes: config.venv_keep_bytes,
            keep_age: config.venv_keep_age,
            toolchain: OnceCell::new(),
            builders: KeyedLocks::default(),
            leases: Leases::default(),
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
        *leases(&self.leases).entry(key.to_string()).or_insert(0) += 1;
        VenvLease {
            leases: self.leases.clone(),
            key: key.to_string(),
        }
    }

    /// Keeps the venvs outside `keep` that no deploy in progress holds within the budget,
    /// least recently used first (on a blocking thread: it walks the venvs). What it removed.
    pub(crate) async fn collect(self: &Arc<Self>, keep: HashSet<String>) -> Vec<String> {
        // Nothing may write into a venv while it is deleted: compiles of the venvs that may
        // go are stopped first (a later use compiles again).
        let leased = leases(&self.leases).clone();
        self.compiles
            .stop(|k| !keep.contains(k) && leased.get(k).is_none_or(|n| *n == 0))
            .await;
        let me = self.clone();
        let work = move || {
            let leased = leases(&me.leases).clone();
            let (removed, summary) = gc::collect(
                &me.dir,
                &keep,
                |k| leased.get(k).is_some_and(|n| *n > 0) || me.builders.is_locked(k),
                me.keep_bytes,
                me.keep_age,
            );
            *me.summary.lock().unwrap_or_else(|p| p.into_inner()) = summary;
            removed
        };
        let removed = tokio::task::spawn_blocking(work).await.unwrap_or_default();
        if !removed.is_empty() {
            tracing::info!(removed = ?removed, "removed unused environments");
        }
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
