//! The data directory's disk space. Apps write their logs straight into it, so an app can
//! take the space the agent needs for its own small files (records, `routes.json`) and for
//! the next deploy's checkout. The agent keeps working when it runs low:
//!
//! * [`reserve`]: a preallocated file in the data directory, deleted when one of the agent's
//!   own writes fails for want of space (the write is then retried), made again once there
//!   is room;
//! * [`room`]: when free space is low, log files give it back, rotated ones first;
//! * [`watch`]: the check after each round of log rotation, which says when space runs low,
//!   once, and when it is back.

pub(crate) mod reserve;
mod room;
pub(crate) mod usage;
mod watch;

use std::io;
use std::path::Path;

pub(crate) use watch::SpaceWatch;

/// Space on the file system that holds a directory, as an unprivileged user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    pub free: u64,
    pub total: u64,
}

/// The free and total space of the file system holding `dir`.
pub(crate) fn space(dir: &Path) -> io::Result<Space> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let unit = s.fragment_size() as u64;
    Ok(Space {
        free: (s.blocks_available() as u64).saturating_mul(unit),
        total: (s.blocks() as u64).saturating_mul(unit),
    })
}

/// Below this much free space the data directory is low: 5% of its file system, at most
/// 1 GiB.
pub(crate) fn low_mark(total: u64) -> u64 {
    (total / 20).min(1 << 30)
}

/// Whether an I/O error says the file system is full (or the user's quota is).
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether an error's text (git's, an installer's) says the file system is full.
pub(crate) fn says_full(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("no space left on device") || m.contains("disk quota exceeded")
}

/// "no space left on the file system of DIR: 0 B free of 64 MiB": why a step failed when
/// the disk is full, naming where and how much is free.
pub(crate) fn full_reason(dir: &Path) -> String {
    // The nearest existing ancestor: the directory that failed may be gone already.
    let at = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
    match space(at) {
        Ok(s) => format!(
            "no space left on the file system of {}: {} free of {}",
            dir.display(),
            crate::capacity::bytes(s.free),
            crate::capacity::bytes(s.total)
        ),
        Err(_) => format!("no space left on the file system of {}", dir.display()),
    }
}

/// Runs `write` (one of the agent's own small files, at `path`); when it fails because the
/// disk is full, makes room — the space reserve first, then the logs — and runs it again.
pub(crate) fn retry_when_full(
    path: &Path,
    mut write: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let first = match write() {
        Err(e) if is_full(&e) => e,
        other => return other,
    };
    if let Some(freed) = reserve::release() {
        tracing::warn!(
            path = %path.display(),
            freed = %crate::capacity::bytes(freed),
            "the disk is full: released the agent's space reserve to write its own file"
        );
        match write() {
            Err(e) if is_full(&e) => {}
            other => return other,
        }
    }
    let Some(root) = reserve::data_dir() else {
        return Err(first);
    };
    let cut = room::make_room(
        root,
        2 * low_mark(space(root).map(|s| s.total).unwrap_or(0)),
    );
    if cut.is_empty() {
        return Err(first);
    }
    tracing::warn!(path = %path.display(), cut = %cut, "the disk is full: cut logs to write the agent's own file");
    write()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disks_are_recognised() {
        assert!(is_full(&io::Error::from_raw_os_error(28)));
        assert!(is_full(&io::Error::from_raw_os_error(122)));
        assert!(!is_full(&io::Error::from_raw_os_error(2)));
        assert!(says_full(
            "could not write to '/d/releases/3/app.py': No space left on device"
        ));
        assert!(!says_full("object not found"));
    }

    #[test]
    fn low_is_five_percent_at_most_a_gibibyte() {
        assert_eq!(low_mark(64 << 20), (64 << 20) / 20);
        assert_eq!(low_mark(1 << 40), 1 << 30);
    }

    #[test]
    fn a_full_reason_names_the_directory_and_its_space() {
        let dir = std::env::temp_dir().join("no-such-dir-of-the-disk-test/releases/3");
        let why = full_reason(&dir);
        assert!(
            why.contains("releases/3") && why.contains(" free of "),
            "{why}"
        );
    }
}
