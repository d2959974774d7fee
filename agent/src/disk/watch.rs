//! The data directory's free space, checked with every round of log rotation: when it runs
//! low (below [`low_mark`]) logs are cut to make room, and the agent says so once — not at
//! every check — and once more when there has been room again for a minute. The space
//! reserve is made (again) here when there is room for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::room::{self, Cut};
use super::{low_mark, reserve, space, Space};
use crate::capacity::bytes;

/// How long free space must stay above twice the low mark before it is said to be back.
const BACK_AFTER: Duration = Duration::from_secs(60);
/// After looking for logs to cut and finding none, the next look waits this long.
const RETRY_FRUITLESS: Duration = Duration::from_secs(1);

/// The state of the data directory's free space between checks.
pub(crate) struct SpaceWatch {
    root: PathBuf,
    /// Set while space is low.
    low: Option<Low>,
    /// When logs were last looked for to cut and there were none.
    fruitless: Option<Instant>,
    /// The space could not be read at the last check (said once).
    unreadable: bool,
    /// The reserve was made once (made again: said).
    reserve_made: bool,
    /// The reserve could not be made at the last try (said once).
    reserve_failed: bool,
}

/// A time of low space.
struct Low {
    since: Instant,
    /// Everything cut since.
    cut: Cut,
    /// Since when there has been room again.
    back_since: Option<Instant>,
}

impl SpaceWatch {
    pub(crate) fn new(root: &Path) -> Self {
        SpaceWatch {
            root: root.to_path_buf(),
            low: None,
            fruitless: None,
            unreadable: false,
            // One left by an earlier run counts as made.
            reserve_made: root.join(reserve::FILE).exists(),
            reserve_failed: false,
        }
    }

    /// Whether space is low (from when it fell below the low mark until it has stayed
    /// above twice that for a minute).
    pub(crate) fn is_low(&self) -> bool {
        self.low.is_some()
    }

    /// Checks the free space: cuts logs when it is low, says when it becomes low and when
    /// it is back, and keeps the space reserve. The free space and the low mark afterwards
    /// (`None`: unreadable). Blocking.
    pub(crate) fn check(&mut self, now: Instant) -> Option<(Space, u64)> {
        let s = match space(&self.root) {
            Ok(s) => s,
            Err(e) => {
                if !self.unreadable {
                    tracing::warn!(dir = %self.root.display(), error = %e, "cannot read the data directory's free space");
                }
                self.unreadable = true;
                return None;
            }
        };
        self.unreadable = false;
        let mark = low_mark(s.total);
        let tried = self
            .fruitless
            .is_some_and(|t| now.duration_since(t) < RETRY_FRUITLESS);
        let s = if s.free < mark && !tried {
            let cut = room::make_room(&self.root, 2 * mark);
            self.fruitless = cut.is_empty().then_some(now);
            let after = space(&self.root).unwrap_or(s);
            self.still_low(now, after, mark, cut);
            after
        } else {
            s
        };
        if let Some(low) = &mut self.low {
            if s.free < 2 * mark {
                low.back_since = None;
            } else if now.duration_since(*low.back_since.get_or_insert(now)) >= BACK_AFTER {
                tracing::info!(
                    dir = %self.root.display(),
                    free = %bytes(s.free),
                    total = %bytes(s.total),
                    low_for = %humantime::format_duration(Duration::from_secs(now.duration_since(low.since).as_secs())),
                    cut = %low.cut,
                    "the data directory has room again"
                );
                self.low = None;
            }
        }
        self.keep_reserve(s);
        Some((s, mark))
    }

    /// Free space is below the mark (after `cut`): said when it was not before.
    fn still_low(&mut self, now: Instant, s: Space, mark: u64, cut: Cut) {
        if let Some(low) = &mut self.low {
            low.cut.add(cut);
            low.back_since = None;
            return;
        }
        tracing::warn!(
            dir = %self.root.display(),
            free = %bytes(s.free),
            total = %bytes(s.total),
            low_mark = %bytes(mark),
            cut = %cut,
            "the data directory's disk is nearly full: the largest logs are cut to make room, and rotated without a copy while it stays low (said once; again when there has been room for a minute)"
        );
        self.low = Some(Low {
            since: now,
            cut,
            back_since: None,
        });
    }

    /// Makes the space reserve when it is missing and there is room.
    fn keep_reserve(&mut self, s: Space) {
        match reserve::ensure(s) {
            Ok(true) => {
                if self.reserve_made {
                    tracing::info!(dir = %self.root.display(), "the agent's space reserve is made again");
                }
                self.reserve_made = true;
                self.reserve_failed = false;
            }
            Ok(false) => {}
            Err(e) => {
                if !self.reserve_failed {
                    tracing::warn!(dir = %self.root.display(), error = %e, "cannot make the agent's space reserve");
                }
                self.reserve_failed = true;
            }
        }
    }
}
