//! Reading log files for the Logs RPC: the last N lines, then (when following) whatever is
//! appended, polled, as whole lines.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::error::Error;
use crate::secrets::Redactor;

/// Most bytes read back for "the last N lines" (and for "all").
const MAX_BACK: u64 = 8 * 1024 * 1024;
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// What a reader asks of a log.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reading {
    /// The last N lines (0: all).
    pub lines: usize,
    /// Then whole lines as they are appended.
    pub follow: bool,
    /// Only lines the agent received at or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// Each line prefixed with the time the agent received it.
    pub timestamps: bool,
}

/// The last `lines` lines of `path` (0: all; only those since `since_ms`), then, when
/// `follow`, whole lines as they are appended; stamped when asked (see [`crate::logtimes`]);
/// every chunk passed through `redactor` (a secret the app printed does not leave the
/// node). The tail is read on a blocking thread, the follow by a task that ends when the
/// stream is dropped.
pub(crate) async fn open(
    path: PathBuf,
    how: Reading,
    redactor: Redactor,
) -> Result<impl Stream<Item = Vec<u8>> + Send + 'static, Error> {
    let p = path.clone();
    let (initial, offset) = tokio::task::spawn_blocking(move || first_lines(&p, how))
        .await
        .map_err(|e| Error::Internal(format!("reading log: {e}")))?
        .map_err(|e| Error::io("reading log", &path, e))?;
    let (tx, rx) = mpsc::channel(16);
    if !initial.is_empty() {
        let _ = tx.send(initial).await;
    }
    if how.follow {
        let stamped = how.timestamps;
        tokio::spawn(async move { follow_appended(&path, offset, tx, stamped).await });
    }
    Ok(ReceiverStream::new(rx).map(move |chunk| redactor.bytes(chunk)))
}

/// What a reader gets first: the last lines asked for, those since the time asked for,
/// stamped when asked; and the offset just past them.
fn first_lines(path: &Path, how: Reading) -> std::io::Result<(Vec<u8>, u64)> {
    if how.since_ms.is_none() && !how.timestamps {
        return tail(path, how.lines);
    }
    let (buf, end) = tail(path, if how.since_ms.is_some() { 0 } else { how.lines })?;
    let notes = crate::logtimes::read(&crate::logtimes::times_path(path));
    let now = crate::logtimes::now_ms();
    let mut pos = end - buf.len() as u64;
    let mut lines: Vec<(i64, &[u8])> = Vec::new();
    for line in buf.split_inclusive(|b| *b == b'\n') {
        pos += line.len() as u64;
        // Not noted yet (written in the last moment): now.
        let t = crate::logtimes::stamp(&notes, pos).unwrap_or(now);
        if how.since_ms.is_some_and(|s| t < s) {
            continue;
        }
        lines.push((t, line));
    }
    if how.lines > 0 && lines.len() > how.lines {
        lines.drain(..lines.len() - how.lines);
    }
    let mut out = Vec::with_capacity(buf.len());
    for (t, line) in lines {
        if how.timestamps {
            out.extend_from_slice(crate::logtimes::format(t).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(line);
    }
    Ok((out, end))
}

/// Each line of `buf` prefixed with the time `ms`.
fn stamped(buf: &[u8], ms: i64) -> Vec<u8> {
    let prefix = crate::logtimes::format(ms);
    let mut out = Vec::with_capacity(buf.len() + 32);
    for line in buf.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.push(b' ');
        out.extend_from_slice(line);
    }
    out
}

/// Keeps only the whole lines of `buf` (a partial last line is dropped); returns how many
/// bytes are left.
fn whole_lines(buf: &mut Vec<u8>) -> u64 {
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(whole);
    whole as u64
}

/// The last `n` whole lines of `path` (0: all, up to 8 MiB) and the offset just past them.
fn tail(path: &Path, n: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let (mut buf, start) = read_back(path, 0, MAX_BACK)?;
    // A partial last line is sent when it completes.
    let end = start + whole_lines(&mut buf);
    if n == 0 {
        return Ok((buf, end));
    }
    let mut count = 0;
    let mut cut = 0;
    for (i, b) in buf.iter().enumerate().rev().skip(1) {
        if *b == b'\n' {
            count += 1;
            if count == n {
                cut = i + 1;
                break;
            }
        }
    }
    Ok((buf.split_off(cut), end))
}

/// The last `n` lines written to `path` after `offset`, a partial last line included (what
/// an app printed just before it died), as text (read on a blocking thread).
pub(crate) async fn last_lines(path: &Path, offset: u64, n: usize) -> Vec<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || last_lines_blocking(&path, offset, n))
        .await
        .unwrap_or_default()
}

fn last_lines_blocking(path: &Path, offset: u64, n: usize) -> Vec<String> {
    // At most the last 64 KiB of this run's output.
    let Ok((buf, _)) = read_back(path, offset, 64 * 1024) else {
        return vec![];
    };
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The end of `path` from `offset` on, at most `max` bytes, and where what was read starts.
/// A missing file reads as empty.
fn read_back(path: &Path, offset: u64, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = offset.max(len.saturating_sub(max)).min(len);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf)?;
    Ok((buf, start))
}

/// Sends whole lines appended after `offset` until the receiver is gone. A file that
/// shrinks (rotated or truncated) is read again from its start.
async fn follow_appended(path: &Path, mut offset: u64, tx: mpsc::Sender<Vec<u8>>, stamp: bool) {
    loop {
        if tx.is_closed() {
            return;
        }
        let len = tokio::fs::metadata(path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if len < offset {
            offset = 0;
        }
        if len > offset {
            let p = path.to_path_buf();
            let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let mut f = std::fs::File::open(&p)?;
                f.seek(SeekFrom::Start(offset))?;
                let mut buf = Vec::new();
                f.take(len - offset).read_to_end(&mut buf)?;
                Ok(buf)
            })
            .await;
            if let Ok(Ok(mut buf)) = read {
                offset += whole_lines(&mut buf);
                if stamp && !buf.is_empty() {
                    // Read within FOLLOW_POLL of arriving: now is when it was received.
                    buf = stamped(&buf, crate::logtimes::now_ms());
                }
                if !buf.is_empty() && tx.send(buf).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_lines_are_kept() {
        let mut b = b"a\nb\npart".to_vec();
        assert_eq!(whole_lines(&mut b), 4);
        assert_eq!(b, b"a\nb\n");
        let mut b = b"no newline yet".to_vec();
        assert_eq!(whole_lines(&mut b), 0);
        assert!(b.is_empty());
    }

    #[test]
    fn tail_takes_last_lines() {
        let dir = std::env::temp_dir().join(format!("logs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.log");
        std::fs::write(&p, "1\n2\n3\n4\npartial").unwrap();
        assert_eq!(tail(&p, 2).unwrap().0, b"3\n4\n");
        assert_eq!(tail(&p, 0).unwrap().0, b"1\n2\n3\n4\n");
        assert_eq!(tail(&p, 10).unwrap().0, b"1\n2\n3\n4\n");
        assert_eq!(tail(&p, 2).unwrap().1, 8);
        assert_eq!(tail(&dir.join("missing"), 5).unwrap().0, b"");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
