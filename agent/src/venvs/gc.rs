//! Which Python environments (venvs) the node keeps. A venv is keyed by a hash of what
//! determines it and shared by every release that asks for the same packages, so removing a
//! deployment and deploying it again (or under a new name) reuses it instead of paying the
//! cold install again (MLflow: ~16 s). Venvs no kept release uses are "unused": they stay
//! while they fit the budget (`venv_keep_bytes` in all, none older than `venv_keep_age`
//! since its last use); past it, the least recently used go first. A venv in use by a kept
//! release, or held by a deploy in progress, is never deleted.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::COMPLETE_MARKER;

/// The node's venvs as the last collection saw them (for `deployctl nodes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Used by a kept release, or by a deploy in progress.
    pub in_use: u32,
    /// Kept for a later deploy that asks for the same packages.
    pub unused: u32,
    /// Their size on disk.
    pub unused_bytes: u64,
}

/// An unused venv, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unused {
    pub key: String,
    pub bytes: u64,
    pub last_used: SystemTime,
}

/// The unused venvs to delete: every one not used for `keep_age`, then the least recently
/// used until the rest fit in `keep_bytes`.
pub(crate) fn evictions(
    mut unused: Vec<Unused>,
    now: SystemTime,
    keep_bytes: u64,
    keep_age: Duration,
) -> Vec<String> {
    unused.sort_by_key(|u| std::cmp::Reverse(u.last_used));
    let mut kept = 0u64;
    let mut out = Vec::new();
    // Newest first: each one stays while it is young enough and fits beside the newer ones.
    for u in unused {
        let age = now.duration_since(u.last_used).unwrap_or_default();
        if age > keep_age || kept.saturating_add(u.bytes) > keep_bytes {
            out.push(u.key);
        } else {
            kept += u.bytes;
        }
    }
    out
}

/// Marks a venv used now (a deploy built or reused it): its completion marker's mtime.
/// Blocking.
pub(crate) fn touch(dir: &Path) {
    let marker = dir.join(COMPLETE_MARKER);
    let touched = std::fs::File::options()
        .append(true)
        .open(&marker)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %marker.display(), error = %e, "cannot mark the environment used");
    }
}

/// What a look at a store found: the unused entries eviction may choose from, leftovers
/// nobody is building (deleted whatever the budget), and what is in use.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub unused: Vec<Unused>,
    pub leftovers: Vec<String>,
    pub in_use: u32,
}

/// The venvs of `venvs_dir`: those in `keep` or `busy` are in use; complete ones are
/// unused; incomplete ones nobody builds are leftovers. Blocking (sizes the unused ones).
pub(crate) fn scan(venvs_dir: &Path, keep: &HashSet<String>, busy: impl Fn(&str) -> bool) -> Scan {
    let mut scan = Scan::default();
    let Ok(entries) = std::fs::read_dir(venvs_dir) else {
        return scan;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // `KEY` directories and their `KEY.pinned.txt` staging files.
        let key = name.split('.').next().unwrap_or_default().to_string();
        if key.is_empty() {
            continue;
        }
        let path = entry.path();
        if keep.contains(&key) || busy(&key) {
            if path.is_dir() {
                scan.in_use += 1;
            }
            continue;
        }
        match std::fs::metadata(path.join(COMPLETE_MARKER)).and_then(|m| m.modified()) {
            Ok(last_used) if path.is_dir() => scan.unused.push(Unused {
                key: name,
                bytes: size_of(&path),
                last_used,
            }),
            // Not complete and nobody builds it: a crash or timeout left it.
            _ => scan.leftovers.push(name),
        }
    }
    scan
}

/// Deletes the leftovers and the unused entries named in `evict` (entries of `dir`, by
/// `delete`); what is left unused is summed up. What it removed. Blocking.
pub(crate) fn remove(
    dir: &Path,
    scan: &Scan,
    evict: &HashSet<String>,
    delete: impl Fn(&Path) -> std::io::Result<()>,
) -> (Vec<String>, u32, u64) {
    let mut removed = Vec::new();
    let chosen = scan.unused.iter().filter(|u| evict.contains(&u.key));
    for name in scan.leftovers.iter().chain(chosen.map(|u| &u.key)) {
        let path = dir.join(name);
        match delete(&path) {
            Ok(()) => removed.push(name.clone()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an unused entry")
            }
        }
    }
    let kept = scan.unused.iter().filter(|u| !evict.contains(&u.key));
    let (n, bytes) = kept.fold((0, 0), |(n, b), u| (n + 1, b + u.bytes));
    (removed, n, bytes)
}

/// Deletes a venv (a directory) or a staging file. Blocking.
pub(crate) fn delete(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// [`scan`], [`evictions`] and [`remove`] over the venvs of `venvs_dir` alone. Blocking.
#[cfg(test)]
pub(crate) fn collect(
    venvs_dir: &Path,
    keep: &HashSet<String>,
    busy: impl Fn(&str) -> bool,
    keep_bytes: u64,
    keep_age: Duration,
) -> (Vec<String>, Summary) {
    let scan = scan(venvs_dir, keep, busy);
    let evict = evictions(scan.unused.clone(), SystemTime::now(), keep_bytes, keep_age)
        .into_iter()
        .collect();
    let (removed, unused, unused_bytes) = remove(venvs_dir, &scan, &evict, delete);
    let summary = Summary {
        in_use: scan.in_use,
        unused,
        unused_bytes,
    };
    (removed, summary)
}

/// The bytes a directory tree takes on disk, each inode once (uv links files from its
/// cache; a file linked twice in the venv counts once).
pub(crate) fn size_of(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(e.path());
            } else if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(key: &str, mb: u64, days_ago: u64, now: SystemTime) -> Unused {
        Unused {
            key: key.into(),
            bytes: mb << 20,
            last_used: now - Duration::from_secs(days_ago * 86_400),
        }
    }

    #[test]
    fn least_recently_used_go_first_until_the_rest_fit() {
        let now = SystemTime::now();
        let week = Duration::from_secs(7 * 86_400);
        let unused = vec![
            u("old", 300, 3, now),
            u("new", 300, 0, now),
            u("mid", 300, 1, now),
        ];
        assert_eq!(evictions(unused.clone(), now, 700 << 20, week), vec!["old"]);
        assert_eq!(
            evictions(unused.clone(), now, 300 << 20, week),
            vec!["mid", "old"]
        );
        assert!(evictions(unused.clone(), now, 1 << 30, week).is_empty());
        // Too old goes whatever the room.
        let two_days = Duration::from_secs(2 * 86_400);
        assert_eq!(evictions(unused, now, u64::MAX, two_days), vec!["old"]);
    }

    #[test]
    fn collection_keeps_what_is_used_busy_or_within_the_budget() {
        let dir = std::env::temp_dir().join(format!("venv-gc-{}", std::process::id()));
        for k in ["used", "busy", "unused", "halfbuilt"] {
            std::fs::create_dir_all(dir.join(k)).unwrap();
        }
        for k in ["used", "busy", "unused"] {
            std::fs::write(dir.join(k).join(COMPLETE_MARKER), k).unwrap();
        }
        std::fs::write(dir.join("stale.pinned.txt"), "x").unwrap();
        let keep: HashSet<String> = ["used".to_string()].into();
        let week = Duration::from_secs(7 * 86_400);
        let (mut removed, summary) = collect(&dir, &keep, |k| k == "busy", u64::MAX, week);
        removed.sort();
        assert_eq!(
            removed,
            vec!["halfbuilt".to_string(), "stale.pinned.txt".to_string()]
        );
        assert_eq!((summary.in_use, summary.unused), (2, 1));
        // No room at all: the unused one goes too.
        let (removed, summary) = collect(&dir, &keep, |k| k == "busy", 0, week);
        assert_eq!(removed, vec!["unused".to_string()]);
        assert_eq!(
            (summary.in_use, summary.unused, summary.unused_bytes),
            (2, 0, 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_big_recent_one_does_not_shield_smaller_older_ones_that_fit() {
        let now = SystemTime::now();
        let week = Duration::from_secs(7 * 86_400);
        let unused = vec![u("huge", 900, 0, now), u("small", 50, 2, now)];
        // huge alone is past the budget: it goes, small stays.
        assert_eq!(evictions(unused, now, 500 << 20, week), vec!["huge"]);
    }
}
