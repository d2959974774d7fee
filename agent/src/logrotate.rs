//! Size-based rotation of the apps' log files, so a log cannot fill the disk: `app.log`
//! and its rotated files together stay within `log_max_bytes × (log_keep + 1)`, however
//! fast the app writes (plus what it writes while the agent reacts: milliseconds).
//!
//! Apps write straight into their log file (never a pipe to the agent, so they outlive an
//! agent restart), holding it open with `O_APPEND`: the agent cannot slow them down, but it
//! can cut. A rename would leave them writing to the old file, so rotation copies and
//! truncates ("copytruncate"): older files shift up (`app.log.1` → `app.log.2`, the oldest
//! is deleted), the newest `log_max_bytes` at most of `app.log` (from a line's start) are
//! copied to `app.log.1`, and `app.log` is truncated; the app's next write lands at the new
//! start. What is older than that in `app.log` is dropped (a burst keeps its end), and
//! lines written during the copy itself may be lost: the price of never touching the app.
//!
//! A log is looked at as it is written ([`crate::logwatch`]) and in rounds. It is cut when
//! it nears `log_max_bytes` (at 15/16 of it, so that a steady writer loses nothing). It is
//! truncated without a copy when the copy cannot be made (the disk is full: rotation never
//! stops), while space is low or the copy would make it so ([`crate::disk`]), and when it
//! was copied less than a second ago (a flood is not copied at the pace it writes).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest time between two looks at the logs.
pub(crate) const SLOWEST: Duration = Duration::from_millis(200);
/// Shortest time between two looks, while a log grows fast.
const FASTEST: Duration = Duration::from_millis(5);
/// A log cut again sooner than this after its last copy is truncated without a copy.
const COPY_INTERVAL: Duration = Duration::from_secs(1);
/// Notes about a log at most this often (a worse kind of note is said at once).
const NOTE_INTERVAL: Duration = Duration::from_secs(60);

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The rotation of every log, from one round to the next.
pub(crate) struct Rotator {
    max: u64,
    keep: usize,
    logs: HashMap<PathBuf, LogState>,
}

/// One log between rounds.
#[derive(Default)]
struct LogState {
    /// Its size at the last look (after a cut: 0), and when that was.
    len: u64,
    seen_at: Option<Instant>,
    last_copy: Option<Instant>,
    /// What happened since the last note.
    pending: Pending,
    last_note: Option<Instant>,
    /// The worst kind said since `last_note`.
    noted: Kind,
}

#[derive(Default)]
struct Pending {
    cuts: u64,
    dropped: u64,
    /// Cut without a copy for want of room.
    no_room: bool,
    error: Option<String>,
}

/// Kinds of notes, mildest first.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    #[default]
    Nothing,
    Rotated,
    Dropped,
    Failed,
}

/// What one cut did.
struct Cutting {
    copied: u64,
    dropped: u64,
    copy_error: Option<io::Error>,
}

impl Rotator {
    pub(crate) fn new(max: u64, keep: usize) -> Self {
        Rotator {
            max,
            keep: keep.max(1),
            logs: HashMap::new(),
        }
    }

    /// The size at which a log is cut.
    fn threshold(&self) -> u64 {
        self.max - self.max / 16
    }

    /// Looks at every log of `logs` (and forgets others) and cuts those near the limit.
    /// `room`: whether the disk has room for copies. When to look again: sooner while a log
    /// grows fast, so that it grows by about `log_max_bytes / 16` between two looks.
    /// Blocking.
    pub(crate) fn round(&mut self, logs: &[PathBuf], room: bool, now: Instant) -> Duration {
        self.logs.retain(|p, _| logs.contains(p));
        let fastest = logs
            .iter()
            .map(|log| self.look(log, room, now))
            .fold(0.0, f64::max);
        if fastest <= 0.0 {
            return SLOWEST;
        }
        let secs = (self.max / 16) as f64 / fastest;
        Duration::from_secs_f64(secs.min(SLOWEST.as_secs_f64())).max(FASTEST)
    }

    /// Looks at these logs only (they changed) and cuts those near the limit. Blocking.
    pub(crate) fn look_at(&mut self, logs: &[PathBuf], room: bool, now: Instant) {
        for log in logs {
            self.look(log, room, now);
        }
    }

    /// Cuts `log` if it is near the limit: how fast it grew since the last look (bytes a
    /// second).
    fn look(&mut self, log: &Path, room: bool, now: Instant) -> f64 {
        let Ok(len) = fs::metadata(log).map(|m| m.len()) else {
            return 0.0;
        };
        let (max, keep, threshold) = (self.max, self.keep, self.threshold());
        let st = self.logs.entry(log.to_path_buf()).or_default();
        let elapsed = st
            .seen_at
            .map_or(SLOWEST, |t| now.duration_since(t))
            .max(Duration::from_millis(1));
        let rate = len.saturating_sub(st.len) as f64 / elapsed.as_secs_f64();
        st.seen_at = Some(now);
        st.len = len;
        if len < threshold {
            return rate;
        }
        let recent = st
            .last_copy
            .is_some_and(|t| now.duration_since(t) < COPY_INTERVAL);
        let copy = room && !recent;
        st.pending.cuts += 1;
        st.pending.no_room |= !room;
        match cut(log, max, keep, copy) {
            Ok(c) => {
                st.len = 0;
                if c.copied > 0 {
                    st.last_copy = Some(now);
                }
                st.pending.dropped += c.dropped;
                if let Some(e) = c.copy_error {
                    let to = numbered(log, 1);
                    st.pending.error = Some(format!("cannot copy to {}: {e}", to.display()));
                }
            }
            Err(e) => st.pending.error = Some(format!("cannot truncate: {e}")),
        }
        st.note(log, now);
        rate
    }
}

impl LogState {
    /// Says what happened to the log: at once when it is worse than what was said within
    /// the last minute, else once a minute, summed up.
    fn note(&mut self, log: &Path, now: Instant) {
        let p = &self.pending;
        let kind = if p.error.is_some() {
            Kind::Failed
        } else if p.dropped > 0 {
            Kind::Dropped
        } else {
            Kind::Rotated
        };
        let due = self
            .last_note
            .is_none_or(|t| now.duration_since(t) >= NOTE_INTERVAL);
        if !due && kind <= self.noted {
            return;
        }
        let (cuts, dropped) = (p.cuts, crate::capacity::bytes(p.dropped));
        match kind {
            Kind::Failed => tracing::warn!(
                log = %log.display(), cuts, %dropped, error = p.error.as_deref().unwrap_or(""),
                "cannot rotate the log as it should: truncated it instead (said at most once a minute)"
            ),
            Kind::Dropped if p.no_room => tracing::warn!(
                log = %log.display(), cuts, %dropped,
                "log truncated without a copy: the disk is low on space (said at most once a minute)"
            ),
            Kind::Dropped => tracing::warn!(
                log = %log.display(), cuts, %dropped,
                "the app writes faster than its log is kept: the older part was dropped (log_max_bytes; said at most once a minute)"
            ),
            _ => tracing::info!(log = %log.display(), cuts, "log rotated"),
        }
        self.noted = if due { kind } else { kind.max(self.noted) };
        self.last_note = Some(now);
        self.pending = Pending::default();
    }
}

/// Cuts `path`: the newest `max` bytes at most copied into `path.1` (older files shifted,
/// `keep` kept) when `copy`, then truncated. Blocking.
fn cut(path: &Path, max: u64, keep: usize, copy: bool) -> io::Result<Cutting> {
    let mut src = OpenOptions::new().read(true).write(true).open(path)?;
    let (mut copied, mut copy_error) = (0, None);
    if copy {
        match copy_newest(path, &mut src, max, keep) {
            Ok(n) => copied = n,
            Err(e) => {
                let _ = fs::remove_file(numbered(path, 1));
                copy_error = Some(e);
            }
        }
    }
    let end = src.metadata()?.len();
    src.set_len(0)?;
    Ok(Cutting {
        copied,
        dropped: end.saturating_sub(copied),
        copy_error,
    })
}

/// Shifts the rotated files up and copies the newest `max` bytes at most of `src` (from a
/// line's start), then what was appended meanwhile while there is room, into `path.1`.
fn copy_newest(path: &Path, src: &mut File, max: u64, keep: usize) -> io::Result<u64> {
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
    let mut dst = crate::fsmode::create_private(&numbered(path, 1))?;
    let end = src.metadata()?.len();
    let mut pos = line_start(src, end.saturating_sub(max))?;
    let mut copied = 0u64;
    loop {
        let end = src.metadata()?.len();
        let room = max - copied;
        if end <= pos || room == 0 {
            break;
        }
        src.seek(SeekFrom::Start(pos))?;
        let n = io::copy(&mut (&mut *src).take((end - pos).min(room)), &mut dst)?;
        if n == 0 {
            break;
        }
        pos += n;
        copied += n;
    }
    Ok(copied)
}

/// Where the first whole line at or after `at` starts (`at` itself when no line ends
/// within 64 KiB of it).
fn line_start(src: &mut File, at: u64) -> io::Result<u64> {
    if at == 0 {
        return Ok(0);
    }
    src.seek(SeekFrom::Start(at - 1))?;
    let mut head = Vec::new();
    BufReader::new((&mut *src).take(64 * 1024)).read_until(b'\n', &mut head)?;
    Ok(match head.last() {
        Some(b'\n') => at - 1 + head.len() as u64,
        _ => at,
    })
}

#[cfg(test)]
mod tests;
