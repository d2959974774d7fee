//! A deployment's own directory (`DATA_DIR`) kept on the node after `remove --keep-data`:
//! everything else of the deployment goes, `deployments/<name>/data` stays (the agent's,
//! 0700, so no app whose user gets the freed uid can read it), with a note of whose it
//! was (`kept-data.json`). The name stays that owner's: another owner cannot deploy it
//! (the deployment is answered as taken) nor remove it; the same owner deploys it again
//! and the new release finds its data, given to the deployment's new user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Supervisor;
use crate::store::Layout;

/// The note beside kept data: `{"owner": "user:alice"}`.
pub(crate) const KEPT_FILE: &str = "kept-data.json";

/// What a removal did with the deployment's `DATA_DIR`.
#[derive(Debug, Clone)]
pub(crate) struct DataLeft {
    pub kept: bool,
    /// Its size when the deployment was removed.
    pub bytes: u64,
    pub dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Note {
    owner: String,
}

/// Every kept data directory of `layout` whose deployment has no record: name → owner.
/// Blocking, when the agent starts.
pub(super) fn load(layout: &Layout) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(layout.deployments()) else {
        return out;
    };
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let note = std::fs::read(e.path().join(KEPT_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Note>(&b).ok());
        if let Some(note) = note {
            out.insert(name, note.owner);
        }
    }
    out
}

/// What of the deployment directory survives deleting it: its data and note when its
/// data is kept. (Names for [`crate::store::delete`].)
pub(crate) fn survivors(kept: bool) -> &'static [&'static str] {
    if kept {
        &["data", KEPT_FILE]
    } else {
        &[]
    }
}

/// Hands `data` to the agent (nobody else passes through it) and writes the note. Blocking.
fn keep(dir: &Path, data: &Path, owner: &str, to_agent: bool) -> std::io::Result<()> {
    if to_agent && data.exists() {
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        crate::process::chown_tree(data, uid.as_raw(), gid.as_raw())?;
    }
    let note = serde_json::to_vec(&Note {
        owner: owner.to_string(),
    })
    .map_err(std::io::Error::other)?;
    crate::fsmode::write_atomic(&dir.join(KEPT_FILE), &note).map_err(std::io::Error::other)
}

impl Supervisor {
    /// The owner of `name`'s kept data, when the node keeps some.
    pub(crate) fn kept_owner(&self, name: &str) -> Option<String> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Whether `name`'s data is kept (from an earlier `remove --keep-data`).
    pub(crate) fn has_kept_data(&self, name: &str) -> bool {
        self.kept_owner(name).is_some()
    }

    /// The size of `name`'s `DATA_DIR` now.
    pub(super) async fn data_size(&self, name: &str) -> u64 {
        let data = self.layout.data(name);
        tokio::task::spawn_blocking(move || crate::venvs::size_of(&data))
            .await
            .unwrap_or(0)
    }

    /// Records that `name`'s data stays (for `owner`) once the rest of it was deleted.
    pub(super) async fn keep_data(&self, name: &str, owner: &str) -> Result<(), String> {
        let (dir, data) = (self.layout.deployment(name), self.layout.data(name));
        let to_agent = matches!(self.app_users, crate::app_user::AppUsers::PerDeployment(_));
        let o = owner.to_string();
        tokio::task::spawn_blocking(move || keep(&dir, &data, &o, to_agent))
            .await
            .map_err(|e| format!("internal error: {e}"))?
            .map_err(|e| format!("keeping the data directory: {e}"))?;
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), owner.to_string());
        Ok(())
    }

    /// Forgets that `name`'s data is kept (it was deleted).
    pub(super) fn data_deleted(&self, name: &str) {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}
