//! When each line of a log reached the agent. Apps write straight into their log file
//! (never through the agent, so they outlive it), so the agent notes, every
//! [`WATCH_PERIOD`], each log's size and the time in a sidecar file (`app.log.times`, one
//! `END_OFFSET UNIX_MS` line per growth). A line is stamped with the first note at or past
//! its end: the time the agent saw it by, within the period. Lines written while the agent
//! was not running carry the time it came back. When a log is rotated (truncated), its
//! notes start over.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often logs are looked at.
pub(crate) const WATCH_PERIOD: Duration = Duration::from_millis(200);

/// A sidecar larger than this loses its older half (old lines then carry a later time).
const MAX_NOTES_BYTES: u64 = 4 * 1024 * 1024;

/// The notes of `log`.
pub(crate) fn times_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".times");
    PathBuf::from(s)
}

/// The sizes each log had when last noted.
#[derive(Debug, Default)]
pub(crate) struct Watcher {
    last: HashMap<PathBuf, u64>,
}

impl Watcher {
    /// Notes the growth of each of `logs` at `now_ms` (blocking: stat and append).
    pub(crate) fn note(&mut self, logs: &[PathBuf], now_ms: i64) {
        self.last.retain(|p, _| logs.contains(p));
        for log in logs {
            let Ok(len) = std::fs::metadata(log).map(|m| m.len()) else {
                continue;
            };
            let times = times_path(log);
            let prev = match self.last.get(log) {
                Some(p) => *p,
                None => read(&times).last().map(|(o, _)| *o).unwrap_or(0),
            };
            if len < prev {
                // Rotated (copied and truncated): the notes start over with it.
                let _ = std::fs::remove_file(&times);
            }
            if len != prev {
                if len > 0 {
                    append(&times, len, now_ms);
                }
                self.last.insert(log.clone(), len);
            } else {
                self.last.entry(log.clone()).or_insert(len);
            }
        }
    }
}

fn append(times: &Path, offset: u64, ms: i64) {
    if std::fs::metadata(times).is_ok_and(|m| m.len() > MAX_NOTES_BYTES) {
        let notes = read(times);
        let keep = &notes[notes.len() / 2..];
        let text: String = keep.iter().map(|(o, t)| format!("{o} {t}\n")).collect();
        if let Ok(mut f) = crate::fsmode::create_private(times) {
            let _ = f.write_all(text.as_bytes());
        }
    }
    if let Ok(mut f) = crate::fsmode::append_private(times) {
        let _ = writeln!(f, "{offset} {ms}");
    }
}

/// The notes of a log: (end offset, unix ms), in order.
pub(crate) fn read(times: &Path) -> Vec<(u64, i64)> {
    std::fs::read_to_string(times)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (o, t) = l.split_once(' ')?;
            Some((o.parse().ok()?, t.trim().parse().ok()?))
        })
        .collect()
}

/// The time the agent saw the byte before `end` by: the first note at or past it.
pub(crate) fn stamp(notes: &[(u64, i64)], end: u64) -> Option<i64> {
    let i = notes.partition_point(|(o, _)| *o < end);
    notes.get(i).map(|(_, t)| *t)
}

/// `2026-12-04T18:27:01.123Z`
pub(crate) fn format(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_noted_and_rotation_starts_over() {
        let dir = std::env::temp_dir().join(format!("logtimes-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("app.log");
        let mut w = Watcher::default();
        std::fs::write(&log, "a\n").unwrap();
        w.note(std::slice::from_ref(&log), 1000);
        w.note(std::slice::from_ref(&log), 1200);
        std::fs::write(&log, "a\nb\nc\n").unwrap();
        w.note(std::slice::from_ref(&log), 1400);
        let notes = read(&times_path(&log));
        assert_eq!(notes, vec![(2, 1000), (6, 1400)]);
        assert_eq!(stamp(&notes, 2), Some(1000));
        assert_eq!(stamp(&notes, 4), Some(1400));
        assert_eq!(stamp(&notes, 7), None);
        // A new watcher (the agent restarted) goes on from the notes.
        let mut again = Watcher::default();
        again.note(std::slice::from_ref(&log), 1600);
        assert_eq!(read(&times_path(&log)).len(), 2);
        std::fs::write(&log, "d\n").unwrap();
        again.note(std::slice::from_ref(&log), 1800);
        assert_eq!(read(&times_path(&log)), vec![(2, 1800)]);
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
