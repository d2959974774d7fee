//! The partial file of a download, written and hashed on blocking threads of its own: the
//! download hands each received chunk (as the connection read it, no copy) to the writer
//! through a bounded queue and goes back to the network at once; the writer writes it and
//! hands it on to the hasher. So receiving, writing and hashing overlap (one after the
//! other on one task, a 1 GiB download ran at 0.68x curl's rate). The disk's writeback is
//! started every [`WINDOW`] bytes so the final fsync has little left to wait for. The
//! writer holds the file locked (flock): a fetch resuming the file waits for an earlier
//! writer's last queued chunks.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc as sync;

use hyper::body::Bytes;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Chunks queued for the writer, and again for the hasher: a chunk is one read of the
/// connection (hyper reads up to ~400 KiB at a time) or 256 KiB of a local file, so at
/// most ~25 MiB wait.
const QUEUE: usize = 32;
/// A local file is read this much at a time.
pub(super) const CHUNK: usize = 256 << 10;
/// Writeback is started for each this many bytes written.
const WINDOW: u64 = 32 << 20;

enum Job {
    Data(Bytes),
    Reset(oneshot::Sender<io::Result<()>>),
    Finish(oneshot::Sender<io::Result<String>>),
}

/// What the writer hands the hasher, in the file's order.
enum Hash {
    Data(Bytes),
    Reset,
    Finish(sync::SyncSender<String>),
}

/// The partial file: its length so far, its writer.
pub(super) struct Partial {
    pub(super) path: PathBuf,
    /// Bytes handed to the writer (what the file holds once they are written).
    pub(super) len: u64,
    jobs: mpsc::Sender<Job>,
    /// The writer's end: why it stopped (a write that failed), taken once.
    ended: Option<oneshot::Receiver<io::Result<()>>>,
}

impl Partial {
    /// Opens `path`; with `keep`, what it holds already is hashed and written after.
    pub(super) async fn open(path: &Path, keep: bool) -> io::Result<Partial> {
        let p = path.to_path_buf();
        let (file, hasher, len) = tokio::task::spawn_blocking(move || open(&p, keep))
            .await
            .map_err(io::Error::other)??;
        let (jobs, queue) = mpsc::channel(QUEUE);
        let (end, ended) = oneshot::channel();
        let (hashing, to_hash) = sync::sync_channel(QUEUE);
        tokio::task::spawn_blocking(move || hash(hasher, to_hash));
        tokio::task::spawn_blocking(move || {
            let _ = end.send(Writer::new(file, hashing, len).run(queue));
        });
        Ok(Partial {
            path: path.to_path_buf(),
            len,
            jobs,
            ended: Some(ended),
        })
    }

    /// Queues `data` to be written and hashed; waits only while the queue is full.
    pub(super) async fn write(&mut self, data: Bytes) -> io::Result<()> {
        let n = data.len() as u64;
        if n == 0 {
            return Ok(());
        }
        self.send(Job::Data(data)).await?;
        self.len += n;
        Ok(())
    }

    async fn send(&mut self, job: Job) -> io::Result<()> {
        match self.jobs.send(job).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.failure().await),
        }
    }

    /// Starts again from nothing (the server sent the whole file).
    pub(super) async fn reset(&mut self) -> io::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Reset(reply)).await?;
        match answer.await {
            Ok(r) => r?,
            Err(_) => return Err(self.failure().await),
        }
        self.len = 0;
        Ok(())
    }

    /// Written to the disk: its hash (hex).
    pub(super) async fn finish(mut self) -> io::Result<String> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Finish(reply)).await?;
        match answer.await {
            Ok(r) => r,
            Err(_) => Err(self.failure().await),
        }
    }

    /// Lets the writer write what it was given and waits until it has.
    pub(super) async fn close(self) -> io::Result<()> {
        let Partial { jobs, ended, .. } = self;
        drop(jobs);
        match ended {
            Some(ended) => ended.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Why the writer stopped.
    async fn failure(&mut self) -> io::Error {
        let why = match self.ended.take() {
            Some(ended) => ended.await.ok().and_then(|r| r.err()),
            None => None,
        };
        why.unwrap_or_else(|| {
            io::Error::other(format!("the writer of {} stopped", self.path.display()))
        })
    }
}

/// The file locked for its writer, and its hash and length so far.
fn open(path: &Path, keep: bool) -> io::Result<(Flock<File>, Sha256, u64)> {
    if !keep {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    // Waits for an earlier writer of the same file to write what it was given.
    let mut file =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((file, hasher, len))
}

/// The hasher thread: hashes what the writer hands it until it is asked for the hash (or
/// the writer is gone).
fn hash(mut hasher: Sha256, queue: sync::Receiver<Hash>) {
    for job in queue {
        match job {
            Hash::Data(data) => hasher.update(&data),
            Hash::Reset => hasher = Sha256::new(),
            Hash::Finish(reply) => {
                let _ = reply.send(hex(&hasher.finalize()));
                return;
            }
        }
    }
}

/// The writer thread's state.
struct Writer {
    file: Flock<File>,
    hashing: sync::SyncSender<Hash>,
    len: u64,
    /// Where writeback was last started.
    flushed: u64,
}

/// The hasher stopped (it does only when told to: never while the writer still writes).
fn hasher_gone<T>(_: T) -> io::Error {
    io::Error::other("the download's hasher stopped")
}

impl Writer {
    fn new(file: Flock<File>, hashing: sync::SyncSender<Hash>, len: u64) -> Writer {
        Writer {
            file,
            hashing,
            len,
            flushed: len,
        }
    }

    /// Until the download finishes or drops its end: the first write that failed.
    fn run(mut self, mut queue: mpsc::Receiver<Job>) -> io::Result<()> {
        while let Some(job) = queue.blocking_recv() {
            match job {
                Job::Data(data) => self.write(data)?,
                Job::Reset(reply) => {
                    let _ = reply.send(self.reset());
                }
                Job::Finish(reply) => {
                    let _ = reply.send(self.finish());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.file.write_all(&data)?;
        self.len += data.len() as u64;
        self.hashing.send(Hash::Data(data)).map_err(hasher_gone)?;
        if self.len - self.flushed >= WINDOW {
            self.writeback();
        }
        Ok(())
    }

    /// Starts writing what was written since the last time to the disk, without waiting
    /// for it (a hint: an error here shows in the final fsync).
    fn writeback(&mut self) {
        let (from, n) = (self.flushed, self.len - self.flushed);
        // SAFETY: the fd is the writer's own open file; the call reads no memory.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                from as libc::off64_t,
                n as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.flushed = self.len;
    }

    fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.hashing.send(Hash::Reset).map_err(hasher_gone)?;
        (self.len, self.flushed) = (0, 0);
        Ok(())
    }

    /// On the disk, and hashed: the hash. The hasher finishes while the disk syncs.
    fn finish(&mut self) -> io::Result<String> {
        let (reply, hashed) = sync::sync_channel(1);
        self.hashing
            .send(Hash::Finish(reply))
            .map_err(hasher_gone)?;
        self.file.sync_all()?;
        hashed.recv().map_err(hasher_gone)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
