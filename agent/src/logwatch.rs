//! Watching the logs as apps write them: every deployment's logs directory is watched
//! with inotify, so a log that grows — and the free space it takes ([`crate::disk`]) — is
//! looked at within milliseconds (at most every 5 ms), not only at the next round; a round
//! every 200 ms at most (sooner while a log grows fast) looks at every log. Apps write into
//! their logs directly: the agent cannot slow them down, only cut in time.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::disk::SpaceWatch;
use crate::logrotate::{Rotator, SLOWEST};
use crate::supervisor::Supervisor;

/// The least time between two looks at logs that changed.
const LOOK_GAP: Duration = Duration::from_millis(5);

/// Every deployment's log files: its app's output and its deploys'.
pub(crate) fn all_logs(sup: &Supervisor) -> Vec<PathBuf> {
    sup.registry()
        .all()
        .iter()
        .flat_map(|d| {
            [
                sup.layout().app_log(d.name()),
                sup.layout().deploy_log(d.name()),
            ]
        })
        .collect()
}

/// The rotation and the free space, shared with the blocking threads that do the work.
struct Keeper {
    rotator: Rotator,
    space: SpaceWatch,
    max: u64,
}

impl Keeper {
    /// Checks the free space (and makes room when it is low): whether copies may be made.
    /// Only while space is not low, and where they leave the disk above its low mark.
    fn room(&mut self, now: Instant) -> bool {
        match self.space.check(now) {
            Some((space, low)) => {
                !self.space.is_low() && space.free >= low.saturating_add(self.max)
            }
            None => true,
        }
    }
}

/// Keeps every deployment's logs within their limit and an eye on the free space, until
/// the agent stops.
pub(crate) async fn run(sup: Arc<Supervisor>) {
    let max = sup.config().log_max_bytes;
    let keeper = Arc::new(Mutex::new(Keeper {
        rotator: Rotator::new(max, sup.config().log_keep),
        space: SpaceWatch::new(&sup.layout().root),
        max,
    }));
    let mut watcher = Watcher::new();
    let mut next_round = tokio::time::Instant::now();
    loop {
        let changed = match watcher.as_mut() {
            Some(w) => tokio::select! {
                _ = tokio::time::sleep_until(next_round) => None,
                changed = w.changed() => Some(changed),
            },
            None => {
                tokio::time::sleep_until(next_round).await;
                None
            }
        };
        let keeper = keeper.clone();
        match changed {
            Some(Ok(files)) => {
                let _ = tokio::task::spawn_blocking(move || {
                    let mut k = keeper.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Instant::now();
                    // The disk too: a log that fills it is cut before it is full.
                    let room = k.room(now);
                    k.rotator.look_at(&files, room, now);
                })
                .await;
                tokio::time::sleep(LOOK_GAP).await;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot watch the logs; looking at them in rounds only");
                watcher = None;
            }
            None => {
                let logs = all_logs(&sup);
                if let Some(w) = watcher.as_mut() {
                    w.watch(logs.iter().filter_map(|l| l.parent().map(PathBuf::from)));
                }
                let next = tokio::task::spawn_blocking(move || {
                    let mut k = keeper.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Instant::now();
                    let room = k.room(now);
                    k.rotator.round(&logs, room, now)
                })
                .await
                .unwrap_or(SLOWEST);
                next_round = tokio::time::Instant::now() + next;
            }
        }
    }
}

/// The inotify instance, as tokio waits on it.
struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The logs directories watched for writes.
struct Watcher {
    fd: AsyncFd<Fd>,
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl Watcher {
    /// `None` (said) when inotify is not available: rounds only.
    fn new() -> Option<Watcher> {
        let made = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(io::Error::from)
            .and_then(|i| {
                // SAFETY: the Inotify owns its descriptor and the AsyncFd owns the Inotify:
                // it stays open, and the same, for as long as the AsyncFd lives.
                unsafe { AsyncFd::register_with_interest(Fd(i), Interest::READABLE) }
                    .map_err(io::Error::from)
            });
        match made {
            Ok(fd) => Some(Watcher {
                fd,
                dirs: HashMap::new(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the logs (inotify); looking at them in rounds only");
                None
            }
        }
    }

    /// Watches these directories too (ones not there yet are tried again next time).
    fn watch(&mut self, dirs: impl Iterator<Item = PathBuf>) {
        for dir in dirs {
            if self.dirs.values().any(|d| *d == dir) || !dir.is_dir() {
                continue;
            }
            // A deleted directory's watch goes by itself (IN_IGNORED).
            let flags = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_ONLYDIR;
            if let Ok(wd) = self.fd.get_ref().0.add_watch(&dir, flags) {
                self.dirs.insert(wd, dir);
            }
        }
    }

    /// Waits for logs to be written: the log files written (every log when events were
    /// lost). Cancel-safe: unread events wait in the kernel.
    async fn changed(&mut self) -> io::Result<Vec<PathBuf>> {
        loop {
            let mut ready = self.fd.readable().await?;
            let events =
                match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                    Ok(events) => events?,
                    Err(_would_block) => continue,
                };
            let mut files = Vec::new();
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    // Events were lost: every log.
                    files.extend(
                        self.dirs
                            .values()
                            .flat_map(|d| [d.join("app.log"), d.join("deploy.log")]),
                    );
                    continue;
                }
                if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.dirs.remove(&e.wd);
                    continue;
                }
                let (Some(dir), Some(name)) = (self.dirs.get(&e.wd), e.name) else {
                    continue;
                };
                if name == "app.log" || name == "deploy.log" {
                    let file = dir.join(name);
                    if !files.contains(&file) {
                        files.push(file);
                    }
                }
            }
            if !files.is_empty() {
                return Ok(files);
            }
        }
    }
}
