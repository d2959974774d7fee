//! One command at a time changes a deployment from a project: the commands that change one
//! (run, env set/unset, rollback, clone) hold an exclusive `flock` on
//! `.deployctl/locks/NAME.lock` in the declaration's project from the moment they read its
//! declaration and state until they have written both back, so the next one starts from
//! what the last one left (`env set A=1 & env set B=2` ends with both). Commands from other
//! checkouts are ordered by the agents instead (a deploy based on a stale generation is
//! refused there, then redone on fresh data or refused here).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::project::Project;

/// Held while it lives; the kernel lets go of it when the process ends, however it ends.
#[derive(Debug)]
pub(crate) struct DeclLock {
    _file: File,
}

/// Where `name`'s lock is.
pub(crate) fn path(project: &Project, name: &str) -> PathBuf {
    project
        .root
        .join(".deployctl")
        .join("locks")
        .join(format!("{name}.lock"))
}

/// Takes `name`'s lock, waiting (and saying so on stderr, naming the holder's pid) while
/// another command holds it.
pub(crate) fn lock(project: &Project, name: &str) -> anyhow::Result<DeclLock> {
    let path = path(project, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the lock directory {}", dir.display()))?;
    }
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            eprintln!(
                "waiting for another deployctl command on {name}{holder} to finish (it holds {})",
                path.display()
            );
            tokio::task::block_in_place(|| f.lock())
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    // Who holds it, for the next one's message (a hint only: failing to write is harmless).
    let _ = f
        .set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| write!(f, "{}", std::process::id()));
    Ok(DeclLock { _file: f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_holder_waits_for_the_first() {
        let dir = std::env::temp_dir().join(format!("deployctl-decl-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let project = Project::find(Some(&dir)).unwrap();
        let first = lock(&project, "iris").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = project.clone();
        let waiter = tokio::spawn(async move {
            let held = lock(&p, "iris").unwrap();
            tx.send(()).unwrap();
            drop(held);
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err());
        let other = lock(&project, "other").expect("another deployment's lock is free");
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the waiter got it");
        waiter.await.unwrap();
        drop(other);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
