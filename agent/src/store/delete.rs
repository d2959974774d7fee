//! Deleting a deployment's directory, or all of it but what `remove --keep-data` keeps.

use super::{blocking, Layout};
use crate::error::{Error, Result};

/// Deletes everything of a deployment: record, releases, logs; but the entries of its
/// directory named in `keep` (its kept data, see `supervisor::kept`).
pub(crate) async fn delete(
    layout: &Layout,
    name: &str,
    keep: &'static [&'static str],
) -> Result<()> {
    let dir = layout.deployment(name);
    blocking(move || {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        if keep.is_empty() {
            return match std::fs::remove_dir_all(&dir) {
                Err(e) if !gone(&e) => Err(Error::io("deleting deployment directory", dir, e)),
                _ => Ok(()),
            };
        }
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if gone(&e) => return Ok(()),
            r => r.map_err(|e| Error::io("deleting deployment directory", &dir, e))?,
        };
        for e in entries.flatten() {
            if keep.iter().any(|k| e.file_name() == *k) {
                continue;
            }
            let path = e.path();
            let removed = match e.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            match removed {
                Err(e) if !gone(&e) => {
                    return Err(Error::io("deleting deployment directory", path, e))
                }
                _ => {}
            }
        }
        Ok(())
    })
    .await
}
