//! A download into a partial file, hashed as it is written. A broken transfer is resumed
//! where it stopped (an HTTP Range from the partial file's length, If-Range naming the
//! file's ETag so a changed file comes whole), a few times within one fetch; a pinned
//! artifact's partial file is also kept for the next deploy to resume. s3:// URLs are
//! read the same way through the S3 API ([`super::s3`]).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use tokio::io::AsyncReadExt;

use super::http::{self, Failure};
use super::partial::{Partial, CHUNK};
use super::s3::S3Access;
use super::{Artifacts, Progress};
use crate::identity::Identity;

/// Tries of one download (the first and the resumed ones).
pub(super) const TRIES: u32 = 6;
/// A transfer that sends nothing for this long is broken.
pub(super) const STALL: Duration = Duration::from_secs(60);

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

/// A write that failed: the disk (said with its free space) or else.
pub(super) fn disk(path: &Path, e: std::io::Error) -> String {
    if crate::disk::is_full(&e) {
        crate::disk::full_reason(path.parent().unwrap_or(path))
    } else {
        format!("cannot write {}: {e}", path.display())
    }
}

/// Downloads `url` into `part` (resuming what it holds when `keep`). A file:// URL is read
/// as `reader` (the deployment's user) when there is one: the agent reads for the app
/// nothing its user could not. An s3:// URL is read with the owner's credentials `s3`.
pub(super) async fn download(
    store: &Artifacts,
    url: &str,
    part: &Path,
    keep: bool,
    (reader, s3): (Option<&Identity>, Option<&S3Access>),
    progress: &Progress,
) -> Result<Downloaded, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let mut file = Partial::open(part, keep).await.map_err(|e| disk(part, e))?;
    progress.done.store(file.len, Ordering::Relaxed);
    let started = Instant::now();
    let got = match parsed.scheme() {
        "file" => match parsed.to_file_path() {
            Ok(path) => match file.reset().await {
                Ok(()) => local(&path, reader, &mut file, progress).await,
                Err(e) => Err(disk(part, e)),
            },
            Err(()) => Err("not a file:// URL of an absolute path".to_string()),
        },
        "s3" => match s3 {
            Some(access) => access.download(&parsed, &mut file, progress).await,
            None => Err("internal error: no credentials for an s3:// artifact".to_string()),
        },
        _ => remote(store, &parsed, &mut file, progress).await,
    };
    if let Err(e) = got {
        // What was received is in the file (to resume) before the fetch lets it go.
        let _ = file.close().await;
        return Err(e);
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
    Err(gave_up(&last, file))
}

/// The error of a download that failed every try: the last failure, what is kept.
pub(super) fn gave_up(last: &str, file: &Partial) -> String {
    let kept = if file.len > 0 {
        format!(" ({} kept to resume)", crate::capacity::bytes(file.len))
    } else {
        String::new()
    };
    format!("the transfer failed {TRIES} times, the last: {last}{kept}")
}

/// Fails before the transfer when the file system cannot hold what is left of a file of
/// `total` bytes (`have` of them written).
pub(super) fn room(part: &Path, total: u64, have: u64) -> Result<(), String> {
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
            let n = data.len() as u64;
            file.write(data)
                .await
                .map_err(|e| Broke::Disk(disk(&file.path, e)))?;
            progress.done.fetch_add(n, Ordering::Relaxed);
            progress.transferred.fetch_add(n, Ordering::Relaxed);
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
    let Some(who) = reader else {
        let mut src = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if let Ok(m) = src.metadata().await {
            progress.total.store(m.len(), Ordering::Relaxed);
        }
        return copy(&mut src, path, file, progress).await;
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
    copy(&mut out, path, file, progress).await?;
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

/// Reads `src` (the file at `path`) into `file` to its end, a chunk at a time.
async fn copy<R: tokio::io::AsyncRead + Unpin>(
    src: &mut R,
    path: &Path,
    file: &mut Partial,
    progress: &Progress,
) -> Result<(), String> {
    loop {
        let mut buf = Vec::with_capacity(CHUNK);
        let n = src
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        file.write(Bytes::from(buf))
            .await
            .map_err(|e| disk(&file.path, e))?;
        progress.done.fetch_add(n as u64, Ordering::Relaxed);
        progress.transferred.fetch_add(n as u64, Ordering::Relaxed);
    }
}
