//! Room made from the logs when the data directory runs low: its largest log files go
//! first (the log that took the space gives it back), a rotated file deleted before a
//! current one of the same size is truncated. A current log of 1 MiB or less is left alone:
//! it frees little and is what the operator reads.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::space;

/// A current log this large or smaller is never truncated to make room.
const TRUNCATE_OVER: u64 = 1 << 20;

/// What was cut to make room.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Rotated log files deleted.
    pub deleted: u64,
    /// Current log files truncated.
    pub truncated: u64,
    pub bytes: u64,
}

impl Cut {
    pub(crate) fn is_empty(&self) -> bool {
        self.deleted == 0 && self.truncated == 0
    }

    pub(crate) fn add(&mut self, other: Cut) {
        self.deleted += other.deleted;
        self.truncated += other.truncated;
        self.bytes += other.bytes;
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "no log to cut");
        }
        write!(
            f,
            "{} of logs ({} rotated file{} deleted, {} log{} truncated)",
            crate::capacity::bytes(self.bytes),
            self.deleted,
            if self.deleted == 1 { "" } else { "s" },
            self.truncated,
            if self.truncated == 1 { "" } else { "s" },
        )
    }
}

/// One log file of a deployment.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    len: u64,
    /// `app.log.N`, `deploy.log.N` (else the current file).
    rotated: bool,
}

/// Cuts the logs under `root` (the data directory), largest first, until its file system
/// has `want_free` bytes free or nothing more may be cut. Blocking.
pub(crate) fn make_room(root: &Path, want_free: u64) -> Cut {
    let mut cut = Cut::default();
    let enough = || space(root).map(|s| s.free >= want_free).unwrap_or(false);
    if enough() {
        return cut;
    }
    let mut files = log_files(root);
    // Largest first; of the same size, a rotated file (deleted) before a current one.
    files.sort_by(|a, b| b.len.cmp(&a.len).then(b.rotated.cmp(&a.rotated)));
    for f in files {
        if enough() {
            break;
        }
        if f.rotated {
            if fs::remove_file(&f.path).is_ok() {
                cut.deleted += 1;
                cut.bytes += f.len;
            }
        } else if f.len > TRUNCATE_OVER
            && OpenOptions::new()
                .write(true)
                .open(&f.path)
                .and_then(|file| file.set_len(0))
                .is_ok()
        {
            cut.truncated += 1;
            cut.bytes += f.len;
        }
    }
    cut
}

/// Every deployment's log files (`deployments/NAME/logs/`), rotated ones too.
fn log_files(root: &Path) -> Vec<LogFile> {
    let mut out = Vec::new();
    let Ok(deployments) = fs::read_dir(root.join("deployments")) else {
        return out;
    };
    for d in deployments.flatten() {
        let Ok(entries) = fs::read_dir(d.path().join("logs")) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rotated) = name.to_str().and_then(kind) else {
                continue;
            };
            // Regular files only (never through a link).
            if let Ok(meta) = fs::symlink_metadata(e.path()) {
                if meta.is_file() {
                    out.push(LogFile {
                        path: e.path(),
                        len: meta.len(),
                        rotated,
                    });
                }
            }
        }
    }
    out
}

/// Whether a file name is a rotated log (`Some(true)`), a current one (`Some(false)`) or
/// not a log.
fn kind(name: &str) -> Option<bool> {
    for base in ["app.log", "deploy.log"] {
        if name == base {
            return Some(false);
        }
        if let Some(n) = name.strip_prefix(base).and_then(|s| s.strip_prefix('.')) {
            return n.parse::<u32>().is_ok().then_some(true);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names() {
        assert_eq!(kind("app.log"), Some(false));
        assert_eq!(kind("deploy.log.2"), Some(true));
        assert_eq!(kind("app.log.tmp"), None);
        assert_eq!(kind("deployment.json"), None);
    }

    #[test]
    fn cuts_are_told_in_words() {
        let cut = Cut {
            deleted: 2,
            truncated: 1,
            bytes: 48 << 20,
        };
        assert_eq!(
            cut.to_string(),
            "48 MiB of logs (2 rotated files deleted, 1 log truncated)"
        );
    }
}
