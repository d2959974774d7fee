//! A download into a partial file, hashed as it is written. A broken transfer is resumed
//! where it stopped (an HTTP Range from the partial file's length, If-Range naming the
//! file's ETag so a changed file comes whole), a few times within one fetch; a pinned
//! artifact's partial file is also kept for the next deploy to resume.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http::{self, Failure};
use super::{Artifacts, Progress};
use crate::identity::Identity;

/// Tries of one download (the first and the resumed ones).
const TRIES: u32 = 6;
/// A transfer that sends nothing for this long is broken.
const STALL: Duration = Duration::from_secs(60);

/// What a download wrote.
pub(super) struct Downloaded {
    pub sha256: String,
    /// The file's size.
    pub bytes: u64,
    /// Bytes transferred by this fetch (less than `bytes` when resumed).
    pub transferred: u64,
    pub took: Duration,
    /// Where it was first resumed (an earlier deploy's partial file, a broken transfer).
    pub resumed_at: Option<u64>,
}

/// The partial file: its hash so far and its length.
struct Partial {
    path: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Opens `path`; with `keep`, what it holds already is hashed and written after.
    async fn open(path: &Path, keep: bool) -> std::io::Result<Partial> {
        let p = path.to_path_buf();
        let (hasher, len) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            if keep {
                if let Ok(mut f) = std::fs::File::open(&p) {
                    len = std::io::copy(&mut f, &mut hasher)?;
                }
            } else {
                let _ = std::fs::remove_file(&p);
            }
            Ok((hasher, len))
        })
        .await
        .map_err(std::io::Error::other)??;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(Partial {
            path: path.to_path_buf(),
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
            hasher,
            len,
        })
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data).await?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Starts again from nothing (the server sent the whole file).
    async fn reset(&mut self) -> std::io::Result<()> {
        self.file.flush().await?;
        self.file.get_mut().set_len(0).await?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Written to the disk: its hash (hex).
    async fn finish(mut self) -> std::io::Result<String> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        Ok(hex(&self.hasher.finalize()))
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A write that failed: the disk (said with its free space) or else.
fn disk(path: &Path, e: std::io::Error) -> String {
    if crate::disk::is_full(&e) {
        crate::disk::full_reason(path.parent().unwrap_or(path))
    } else {
        format!("cannot write {}: {e}", path.display())
    }
}

/// Downloads `url` into `part` (resuming what it holds when `keep`). A file:// URL is read
/// as `reader` (the deployment's user) when there is one: the agent reads for the app
/// nothing its user could not.
pub(super) async fn download(
    store: &Artifacts,
    url: &str,
    part: &Path,
    keep: bool,
    reader: Option<&Identity>,
    progress: &Progress,
) -> Result<Downloaded, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let mut file = Partial::open(part, keep).await.map_err(|e| disk(part, e))?;
    progress.done.store(file.len, Ordering::Relaxed);
    let started = Instant::now();
    if parsed.scheme() == "file" {
        let path = parsed
            .to_file_path()
            .map_err(|_| "not a file:// URL of an absolute path".to_string())?;
        file.reset().await.map_err(|e| disk(part, e))?;
        local(&path, reader, &mut file, progress).await?;
    } else {
        remote(store, &parsed, &mut file, progress).await?;
    }
    let bytes = file.len;
    let sha256 = file.finish().await.map_err(|e| disk(part, e))?;
    Ok(Downloaded {
        sha256,
        bytes,
        transferred: progress.transferred.load(Ordering::Relaxed),
        took: started.elapsed(),
        resumed_at: Some(progress.resumed_at.load(Ordering::Relaxed)).filter(|at| *at > 0),
    })
}

/// An http(s) download, resumed after a broken transfer.
async fn remote(
    store: &Artifacts,
    url: &url::Url,
    file: &mut Partial,
    progress: &Progress,
) -> Result<(), String> {
    let mut validator: Option<String> = None;
    let mut last = String::new();
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(4))).await;
        }
        let mut answer = match http::get(url, file.len, validator.as_deref(), || store.tls()).await
        {
            Ok(a) => a,
            Err(Failure::Again(e)) => {
                last = e;
                continue;
            }
            Err(Failure::Final(e)) => return Err(e),
        };
        match (answer.status, answer.range) {
            (206, Some((start, total))) if start == file.len => {
                progress.total.store(total.unwrap_or(0), Ordering::Relaxed);
                let _ = progress.resumed_at.compare_exchange(
                    0,
                    start,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            (200, _) => {
                // The whole file (no range asked, or the server does not do ranges).
                file.reset().await.map_err(|e| disk(&file.path, e))?;
                progress
                    .total
                    .store(answer.length.unwrap_or(0), Ordering::Relaxed);
            }
            // Nothing after what the partial file holds: it is whole (the hash decides).
            (416, _) if file.len > 0 => return Ok(()),
            (206, _) => {
                file.reset().await.map_err(|e| disk(&file.path, e))?;
                last = "the server sent another range than asked for".into();
                continue;
            }
            (status, _) => {
                let reason = hyper::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                return Err(format!("HTTP {status} {reason}").trim_end().to_string());
            }
        }
        if validator.is_none() {
            validator = answer.validator.clone();
        }
        room(&file.path, progress.total.load(Ordering::Relaxed), file.len)?;
        progress.done.store(file.len, Ordering::Relaxed);
        match body(&mut answer.body, file, progress).await {
            Ok(()) => return Ok(()),
            Err(Broke::Network(e)) => last = e,
            Err(Broke::Disk(e)) => return Err(e),
        }
    }
    Err(format!(
        "the transfer failed {TRIES} times, the last: {last}{}",
        if file.len > 0 {
            format!(" ({} kept to resume)", crate::capacity::bytes(file.len))
        } else {
            String::new()
        }
    ))
}

/// Fails before the transfer when the file system cannot hold what is left of a file of
/// `total` bytes (`have` of them written).
fn room(part: &Path, total: u64, have: u64) -> Result<(), String> {
    let left = total.saturating_sub(have);
    let dir = part.parent().unwrap_or(part);
    match crate::disk::space(dir) {
        Ok(s) if left > s.free => Err(format!(
            "{} to download but {} free on the file system of {}",
            crate::capacity::bytes(left),
            crate::capacity::bytes(s.free),
            dir.display()
        )),
        _ => Ok(()),
    }
}

enum Broke {
    Network(String),
    Disk(String),
}

/// Writes the answer's body into `file`.
async fn body(
    body: &mut hyper::body::Incoming,
    file: &mut Partial,
    progress: &Progress,
) -> Result<(), Broke> {
    loop {
        let frame = match tokio::time::timeout(STALL, body.frame()).await {
            Err(_) => {
                return Err(Broke::Network(format!(
                    "nothing received for {} s",
                    STALL.as_secs()
                )))
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(Broke::Network(format!("the transfer broke: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            file.write(&data)
                .await
                .map_err(|e| Broke::Disk(disk(&file.path, e)))?;
            progress
                .done
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            progress
                .transferred
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A file of the node, read as `reader` (through `cat` run as that user) or as the agent.
async fn local(
    path: &Path,
    reader: Option<&Identity>,
    file: &mut Partial,
    progress: &Progress,
) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 20];
    let Some(who) = reader else {
        let mut src = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Ok(m) = src.metadata().await {
            progress.total.store(m.len(), Ordering::Relaxed);
        }
        loop {
            let n = src
                .read(&mut buf)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 {
                return Ok(());
            }
            file.write(&buf[..n])
                .await
                .map_err(|e| disk(&file.path, e))?;
            progress.done.fetch_add(n as u64, Ordering::Relaxed);
            progress.transferred.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let mut child = tokio::process::Command::new("cat")
        .arg("--")
        .arg(path)
        .uid(who.uid)
        .gid(who.gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start cat to read {}: {e}", path.display()))?;
    let mut out = child.stdout.take().ok_or("cat has no output")?;
    let mut err = child.stderr.take().ok_or("cat has no error output")?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text).await;
        text
    });
    loop {
        let n = out
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        file.write(&buf[..n])
            .await
            .map_err(|e| disk(&file.path, e))?;
        progress.done.fetch_add(n as u64, Ordering::Relaxed);
        progress.transferred.fetch_add(n as u64, Ordering::Relaxed);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if status.success() {
        return Ok(());
    }
    let why = errors.await.unwrap_or_default();
    let why = why
        .trim()
        .rsplit(": ")
        .next()
        .filter(|w| !w.is_empty())
        .unwrap_or("cat failed");
    Err(format!(
        "cannot read {} as {} (the deployment's user): {why}",
        path.display(),
        who.user
    ))
}
