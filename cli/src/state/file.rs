//! The file backend: a JSON document next to a lock file. Writers take an exclusive
//! `flock` on the lock file, read, change, write a temporary file, fsync it and rename it
//! over the document, so no concurrent `deployctl` loses another's update and a crash never
//! leaves a torn file. Works on a shared filesystem that supports flock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BoxFuture, Change, State, StateStore};

pub(crate) struct FileState {
    path: PathBuf,
}

impl FileState {
    pub(crate) fn new(path: PathBuf) -> Self {
        FileState { path }
    }

    fn lock_file(&self, exclusive: bool) -> anyhow::Result<File> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let lock_path = self.path.with_extension("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening state lock {}", lock_path.display()))?;
        if exclusive { f.lock() } else { f.lock_shared() }
            .with_context(|| format!("locking {}", lock_path.display()))?;
        Ok(f)
    }

    fn read(&self) -> anyhow::Result<State> {
        match std::fs::read(&self.path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(State::default()),
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the state file {} is not valid JSON; fix or move it (deployctl will not overwrite it)",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading state {}", self.path.display())),
        }
    }

    fn write(&self, state: &State) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(state).context("encoding state")?;
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&self.path, &bytes)
            .with_context(|| format!("writing state {}", self.path.display()))
    }
}

impl FileState {
    fn update_blocking(&self, change: Change<'_>) -> anyhow::Result<()> {
        let _lock = self.lock_file(true)?;
        let mut state = self.read()?;
        change(&mut state)?;
        self.write(&state)
    }
}

impl StateStore for FileState {
    fn load(&self) -> BoxFuture<'_, State> {
        Box::pin(async move {
            tokio::task::block_in_place(|| {
                let _lock = self.lock_file(false)?;
                self.read()
            })
        })
    }

    fn update<'a>(&'a self, change: Change<'a>) -> BoxFuture<'a, ()> {
        // Waiting for the lock blocks; tell the runtime so other tasks keep running.
        Box::pin(async move { tokio::task::block_in_place(|| self.update_blocking(change)) })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = std::env::temp_dir().join(format!("deployctl-state-{}", std::process::id()));
        let path = dir.join("state.json");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    FileState::new(path)
                        .update_blocking(&mut |s| {
                            s.deployments.insert(format!("d{i}"), Default::default());
                            Ok(())
                        })
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = FileState::new(path.clone()).read().unwrap();
        assert_eq!(state.deployments.len(), 16);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_not_overwritten() {
        let dir = std::env::temp_dir().join(format!("deployctl-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = FileState::new(path.clone())
            .update_blocking(&mut |_| Ok(()))
            .unwrap_err();
        assert!(format!("{err:#}").contains("not valid JSON"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{not json");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
