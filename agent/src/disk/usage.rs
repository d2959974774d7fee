//! How much a deployment's `DATA_DIR` holds, for `status NAME`: the bytes of the files under
//! it (its caches, `DATA_DIR/.cache`, included) and under its caches alone. Counted only when
//! asked for one deployment: it walks the directory.

use std::path::{Path, PathBuf};

/// Entries looked at, at most: a directory of millions of small files is counted up to here
/// (its figure is then a lower bound) rather than holding a status call for seconds.
const MOST_ENTRIES: usize = 200_000;

/// The bytes under `data` and under `data/.cache`; `None` when `data` cannot be read.
pub(crate) async fn data_usage(data: PathBuf) -> Option<(u64, u64)> {
    tokio::task::spawn_blocking(move || {
        let mut budget = MOST_ENTRIES;
        let cache = bytes_under(&data.join(".cache"), &mut budget);
        let rest = bytes_under_except(&data, Some(&data.join(".cache")), &mut budget)?;
        Some((rest + cache.unwrap_or(0), cache.unwrap_or(0)))
    })
    .await
    .ok()
    .flatten()
}

fn bytes_under(dir: &Path, budget: &mut usize) -> Option<u64> {
    bytes_under_except(dir, None, budget)
}

/// The sizes of the regular files under `dir` (symlinks not followed), leaving out `except`.
fn bytes_under_except(dir: &Path, except: Option<&Path>, budget: &mut usize) -> Option<u64> {
    let mut total = 0;
    let mut pending = vec![std::fs::read_dir(dir).ok()?];
    while let Some(entries) = pending.last_mut() {
        let Some(entry) = entries.next() else {
            pending.pop();
            continue;
        };
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let Ok(entry) = entry else { continue };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            if except != Some(entry.path().as_path()) {
                if let Ok(sub) = std::fs::read_dir(entry.path()) {
                    pending.push(sub);
                }
            }
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_files_and_caches_apart_without_following_links() {
        let dir = std::env::temp_dir().join(format!("deploy-usage-{}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(data.join(".cache/huggingface")).unwrap();
        std::fs::create_dir_all(data.join("runs")).unwrap();
        std::fs::write(data.join("runs/a.txt"), vec![0u8; 1000]).unwrap();
        std::fs::write(data.join(".cache/huggingface/model.bin"), vec![0u8; 5000]).unwrap();
        std::os::unix::fs::symlink("/etc", data.join("etc")).unwrap();
        assert_eq!(data_usage(data.clone()).await, Some((6000, 5000)));
        assert_eq!(data_usage(dir.join("missing")).await, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
