//! Size-based rotation of the apps' log files, so a chatty app cannot fill the disk.
//!
//! Apps write straight into their log file (never a pipe to the agent, so they outlive an
//! agent restart), holding it open with `O_APPEND`. A rename would leave them writing to the
//! old file, so rotation copies and truncates ("copytruncate"): `app.log` is copied to
//! `app.log.1` (older ones shift up to `app.log.N`, the oldest is deleted) and truncated;
//! the app's next write lands at the new end. Lines written during the copy itself (well
//! under a millisecond for each MiB) may be lost: the price of never touching the app.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Rotates each of `logs` that grew past `max_bytes`, keeping `keep` older files of each
/// (on a blocking thread).
pub(crate) async fn rotate_all(logs: Vec<PathBuf>, max_bytes: u64, keep: usize) {
    let _ = tokio::task::spawn_blocking(move || {
        for log in logs {
            match rotate_if_larger(&log, max_bytes, keep) {
                Ok(true) => tracing::info!(log = %log.display(), "log rotated"),
                Ok(false) => {}
                Err(e) => tracing::warn!(log = %log.display(), error = %e, "cannot rotate log"),
            }
        }
    })
    .await;
}

/// Rotates `path` when it is larger than `max_bytes`, keeping `keep` older files.
/// Returns whether it rotated. Blocking.
fn rotate_if_larger(path: &Path, max_bytes: u64, keep: usize) -> io::Result<bool> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes {
        return Ok(false);
    }
    let keep = keep.max(1);
    match fs::remove_file(numbered(path, keep)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for n in (1..keep).rev() {
        match fs::rename(numbered(path, n), numbered(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let mut src = OpenOptions::new().read(true).write(true).open(path)?;
    let mut dst = crate::fsmode::create_private(&numbered(path, 1))?;
    // Copy to the end, then whatever was appended meanwhile, then truncate at once.
    let mut copied = 0u64;
    loop {
        let end = src.metadata()?.len();
        if end <= copied {
            break;
        }
        src.seek(SeekFrom::Start(copied))?;
        copied += io::copy(&mut (&mut src).take(end - copied), &mut dst)?;
    }
    src.set_len(0)?;
    dst.flush()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("logrotate-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("app.log");
        // An appender that keeps its descriptor, like an app does.
        let mut app = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for round in 0..5 {
            app.write_all(format!("round {round}\n").repeat(100).as_bytes())
                .unwrap();
            assert!(rotate_if_larger(&log, 500, 2).unwrap());
            assert_eq!(fs::metadata(&log).unwrap().len(), 0);
        }
        assert!(
            !rotate_if_larger(&log, 500, 2).unwrap(),
            "empty: nothing to do"
        );
        app.write_all(b"after\n").unwrap();
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            "after\n",
            "the app writes at the new start"
        );
        assert!(fs::read_to_string(numbered(&log, 1))
            .unwrap()
            .starts_with("round 4"));
        assert!(fs::read_to_string(numbered(&log, 2))
            .unwrap()
            .starts_with("round 3"));
        assert!(!numbered(&log, 3).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
