//! The space reserve: a preallocated file, `DATA/.space-reserve` (4 MiB, less on a small
//! file system), kept so the agent's own small files can still be written when an app has
//! filled the disk. A write of the agent's own that fails for want of space deletes it and
//! tries again ([`super::retry_when_full`]); the agent makes it again once there is room.
//! The agent and the node proxy (a process of its own, which writes `routes.json`) both
//! [`install`] it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{low_mark, Space};

/// The reserve's name in the data directory.
pub(crate) const FILE: &str = ".space-reserve";
/// Its size on a file system of 128 MiB or more.
const MAX_BYTES: u64 = 4 << 20;

static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();
/// One release or creation at a time.
static LOCK: Mutex<()> = Mutex::new(());

/// Says where the reserve lives: the data directory (once per process).
pub(crate) fn install(data_dir: &Path) {
    let _ = DATA_DIR.set(data_dir.to_path_buf());
}

/// The data directory given to [`install`].
pub(crate) fn data_dir() -> Option<&'static Path> {
    DATA_DIR.get().map(PathBuf::as_path)
}

fn path() -> Option<PathBuf> {
    data_dir().map(|d| d.join(FILE))
}

/// The reserve's size on a file system of `total` bytes.
pub(crate) fn size(total: u64) -> u64 {
    MAX_BYTES.min(total / 32)
}

/// Deletes the reserve: the bytes it freed, when there was one.
pub(crate) fn release() -> Option<u64> {
    let path = path()?;
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let len = fs::metadata(&path).ok()?.len();
    fs::remove_file(&path).ok()?;
    Some(len)
}

/// Makes the reserve when it is missing and `space` leaves room for it above the low mark:
/// whether it made it.
pub(crate) fn ensure(space: Space) -> io::Result<bool> {
    let Some(path) = path() else {
        return Ok(false);
    };
    let size = size(space.total);
    if size == 0 || path.exists() || space.free < low_mark(space.total) + size {
        return Ok(false);
    }
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = path.with_file_name(format!("{FILE}.tmp"));
    let made = (|| {
        let f = crate::fsmode::create_private(&tmp)?;
        // Blocks really allocated (not a sparse file), so deleting it frees them.
        nix::fcntl::posix_fallocate(&f, 0, size as i64).map_err(io::Error::from)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_file_systems_get_a_small_reserve() {
        assert_eq!(size(64 << 20), 2 << 20);
        assert_eq!(size(1 << 40), MAX_BYTES);
    }
}
