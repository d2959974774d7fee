//! Who may read the agent's data directory. Logs hold what apps print (secrets included:
//! they are redacted only when served), records hold declarations, and `secrets/`,
//! `auth.toml`, `tls/` and `known_hosts` are the node's keys. None of it is for other users
//! of the node, apps run as another user included: directories are 0700 and files 0600,
//! owned by the agent. The only exception is the path down to what an app runs from (its
//! release checkout and its venv): the data directory and `deployments/NAME/` are 0711, so
//! an app's user can pass through them to its own release without listing anything.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::Error;
use crate::layout::Layout;

/// Directories nobody else may read or enter.
pub(crate) const PRIVATE_DIR: u32 = 0o700;
/// Directories an app's user passes through on its way to its release, without listing.
pub(crate) const PASS_THROUGH_DIR: u32 = 0o711;
/// Files nobody else may read.
pub(crate) const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and its parents) and sets its mode.
pub(crate) fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// Opens `path` for appending, creating it readable by the agent only.
pub(crate) fn append_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE)
        .open(path)
}

/// Creates (or truncates) `path`, readable by the agent only.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .open(path)
}

/// Sets the modes of a data directory an older agent made (0755 directories, 0644 files):
/// run once when the agent starts. Failures are logged; the agent starts regardless.
pub(crate) fn tighten(layout: &Layout, auth_file: &Path) {
    let root = &layout.root;
    set(root, PASS_THROUGH_DIR);
    set(&layout.deployments(), PASS_THROUGH_DIR);
    if let Ok(entries) = fs::read_dir(layout.deployments()) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            set(&dir, PASS_THROUGH_DIR);
            set(&dir.join("releases"), PASS_THROUGH_DIR);
            set(&dir.join("deployment.json"), PRIVATE_FILE);
            private_tree(&dir.join("logs"));
        }
    }
    for private in ["secrets", "tls"] {
        private_tree(&root.join(private));
    }
    // The mirrors keep git's modes: a closed git/ shuts them away (and a big mirror's files
    // are not walked at every start).
    set(&root.join("git"), PRIVATE_DIR);
    for file in [root.join("known_hosts"), auth_file.to_path_buf()] {
        set(&file, PRIVATE_FILE);
    }
}

/// 0700 for `dir` and the directories under it, 0600 for its files.
fn private_tree(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    set(dir, PRIVATE_DIR);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => private_tree(&path),
            Ok(t) if t.is_file() => set(&path, PRIVATE_FILE),
            _ => {}
        }
    }
}

/// Sets `mode` on `path` when it exists and has other group/other bits than `mode` allows.
fn set(path: &Path, mode: u32) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() || meta.permissions().mode() & 0o7777 == mode {
        return;
    }
    if let Err(e) = fs::set_permissions(path, Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot restrict the mode");
    }
}

/// Replaces `path` with `bytes` atomically, for the agent's eyes only (0600): a temporary
/// file beside it, fsync, rename, fsync of the directory. When the disk is full, room is
/// made (the space reserve, then logs: [`crate::disk`]) and the write tried again. Blocking.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Unique per write, so two writers never share a temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        // Records, auth.toml, keys: for the agent's eyes only.
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    // Its own files are not the ones that fail because an app's log took the space.
    crate::disk::retry_when_full(path, || {
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    })
    .map_err(|e| Error::io("writing", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_data_directory_is_tightened() {
        let root = std::env::temp_dir().join(format!("fsmode-test-{}", std::process::id()));
        let layout = Layout::new(root.clone());
        let logs = layout.logs("web");
        fs::create_dir_all(&logs).unwrap();
        fs::create_dir_all(layout.release("web", 1)).unwrap();
        fs::create_dir_all(root.join("secrets/user_alice")).unwrap();
        for f in [
            logs.join("app.log"),
            layout.record("web"),
            root.join("secrets/user_alice/DB"),
            root.join("auth.toml"),
        ] {
            fs::write(&f, "x").unwrap();
            fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        }
        for d in [&root, &logs, &root.join("secrets")] {
            fs::set_permissions(d, Permissions::from_mode(0o755)).unwrap();
        }
        tighten(&layout, &root.join("auth.toml"));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o711);
        assert_eq!(mode(&layout.deployment("web")), 0o711);
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&logs.join("app.log")), 0o600);
        assert_eq!(mode(&layout.record("web")), 0o600);
        assert_eq!(mode(&root.join("secrets")), 0o700);
        assert_eq!(mode(&root.join("secrets/user_alice/DB")), 0o600);
        assert_eq!(mode(&root.join("auth.toml")), 0o600);
        let _ = fs::remove_dir_all(&root);
    }
}
