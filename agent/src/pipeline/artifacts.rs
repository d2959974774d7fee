//! artifacts: the spec's model and data files put in the node's store (each downloaded once
//! per node and verified against its sha256, an archive unpacked once), all at the same
//! time and while the code is fetched and the packages installed; then, once the checkout
//! is there, each linked read-only at its path in the workdir. The step says what it
//! reused and what it fetched, with sizes and rates.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{self, Events, Phase, StepError};
use super::{blocking, short};
use crate::artifacts::{Fetched, Progress};
use crate::capacity::bytes;
use crate::identity::Identity;
use crate::leases::Lease;
use crate::spec::{Artifact, Spec};
use crate::supervisor::NodeServices;

/// How often a long download says how far it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The artifacts in the store, for [`link`].
pub(super) struct Stored {
    items: Vec<(Artifact, Fetched)>,
    started: Instant,
}

/// The artifacts linked into the release: the hash each one has, in the spec's order, and
/// the leases that keep them from collection until the deploy is over.
#[derive(Default)]
pub(super) struct Linked {
    pub hashes: Vec<String>,
    pub leases: Vec<Lease>,
}

/// Puts every artifact of `spec` in the store, at the same time. `None`: it has none.
/// `reader`: who reads `file://` URLs (the deployment's user; `None`: the agent's).
pub(super) async fn fetch(
    node: &NodeServices,
    reader: Option<Identity>,
    spec: &Spec,
    events: &Events,
) -> Result<Option<Stored>, StepError> {
    if spec.artifacts.is_empty() {
        return Ok(None);
    }
    let started = Instant::now();
    let names: Vec<String> = spec
        .artifacts
        .iter()
        .map(|a| a.path.display().to_string())
        .collect();
    events.emit(
        events::ARTIFACTS,
        Phase::Started,
        names.join(", "),
        Duration::ZERO,
    );
    let mut tasks = tokio::task::JoinSet::new();
    let mut progress = Vec::new();
    for (i, a) in spec.artifacts.iter().enumerate() {
        let p = Arc::new(Progress::default());
        progress.push(p.clone());
        let fetch = node.artifacts().clone().fetch(a.clone(), reader.clone(), p);
        tasks.spawn(async move { (i, fetch.await) });
    }
    let mut done: Vec<Option<Fetched>> = spec.artifacts.iter().map(|_| None).collect();
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    while done.iter().any(Option::is_none) {
        tokio::select! {
            joined = tasks.join_next() => {
                let (i, result) = match joined {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => return Err(failed(events, started, format!("internal error: {e}"))),
                    None => break,
                };
                match result {
                    Ok(f) => done[i] = Some(f),
                    Err(e) => {
                        let a = &spec.artifacts[i];
                        let why = format!("artifacts[{i}] {}: {e}", a.path.display());
                        // The other downloads stop (their partial files stay, to resume).
                        tasks.abort_all();
                        return Err(failed(events, started, why));
                    }
                }
            }
            _ = ticks.tick() => {
                for (i, p) in progress.iter().enumerate().filter(|(i, _)| done[*i].is_none()) {
                    if let Some(line) = progress_line(&names[i], p, started.elapsed()) {
                        events.info(events::ARTIFACTS, line);
                    }
                }
            }
        }
    }
    let items = spec
        .artifacts
        .iter()
        .cloned()
        .zip(done.into_iter().flatten())
        .collect();
    Ok(Some(Stored { items, started }))
}

fn failed(events: &Events, started: Instant, reason: String) -> StepError {
    events.emit(
        events::ARTIFACTS,
        Phase::Failed,
        reason.clone(),
        started.elapsed(),
    );
    StepError::new(events::ARTIFACTS, reason)
}

/// "models/model.pkl: 312 MiB of 1.2 GiB (35 MiB/s)", for a download under way.
fn progress_line(name: &str, p: &Progress, elapsed: Duration) -> Option<String> {
    let (done, total, moved) = (
        p.done.load(Ordering::Relaxed),
        p.total.load(Ordering::Relaxed),
        p.transferred.load(Ordering::Relaxed),
    );
    if moved == 0 {
        return None;
    }
    let of = if total > 0 {
        format!(" of {}", bytes(total))
    } else {
        String::new()
    };
    Some(format!(
        "{name}: {}{of} ({})",
        bytes(done),
        rate(moved, elapsed)
    ))
}

fn rate(moved: u64, took: Duration) -> String {
    let secs = took.as_secs_f64().max(0.001);
    format!("{}/s", bytes((moved as f64 / secs) as u64))
}

/// "40 ms", "3.2 s", "2 min 5 s".
fn took(d: Duration) -> String {
    match d.as_millis() {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// What the step did with each artifact: "models/model.pkl 1.2 GiB reused, tokenizer.json
/// 2 MiB fetched in 40 ms (50 MiB/s)".
fn summary(items: &[(Artifact, Fetched)]) -> String {
    let said: Vec<String> = items
        .iter()
        .map(|(a, f)| {
            let mut s = format!("{} {}", a.path.display(), bytes(f.bytes));
            match f.downloaded {
                Some((moved, t)) => {
                    s.push_str(&format!(" fetched in {} ({})", took(t), rate(moved, t)));
                    if let Some(at) = f.resumed_at {
                        s.push_str(&format!(", resumed at {}", bytes(at)));
                    }
                }
                None => s.push_str(" reused"),
            }
            if let Some(n) = f.unpacked {
                s.push_str(&format!(
                    ", unpacked ({n} entr{})",
                    if n == 1 { "y" } else { "ies" }
                ));
            }
            s
        })
        .collect();
    said.join(", ")
}

/// Links every stored artifact at its path in the workdir of release directory `dir`
/// (whose files are still the agent's: nothing else can change them meanwhile).
pub(super) async fn link(
    node: &NodeServices,
    spec: &Spec,
    dir: &Path,
    commit: &str,
    stored: Stored,
    events: &Events,
) -> Result<Linked, StepError> {
    let Stored { items, started } = stored;
    let message = summary(&items);
    let store = node.artifacts().clone();
    let plan: Vec<(Artifact, std::path::PathBuf)> = items
        .iter()
        .map(|(a, f)| (a.clone(), store.entry(&f.key)))
        .collect();
    let (dir, workdir, at) = (
        dir.to_path_buf(),
        spec.workdir.clone(),
        format!("at commit {}", short(commit)),
    );
    let linked = blocking(events::ARTIFACTS, move || {
        link_all(&dir, &workdir, &plan, &at)
    })
    .await;
    if let Err(e) = linked {
        return Err(failed(events, started, e.reason));
    }
    events.emit(events::ARTIFACTS, Phase::Done, message, started.elapsed());
    let (hashes, leases) = items.into_iter().map(|(_, f)| (f.sha256, f.lease)).unzip();
    Ok(Linked { hashes, leases })
}

/// Each artifact's symlink to its store entry. Directories on the way are made when the
/// checkout has none; a symlink of the checkout on the way, or anything already at the
/// path, is refused (the checkout's own files are not replaced). Blocking.
fn link_all(
    dir: &Path,
    workdir: &Path,
    plan: &[(Artifact, std::path::PathBuf)],
    at: &str,
) -> Result<(), StepError> {
    let refuse = |i: usize, why: String| {
        StepError::new(
            events::ARTIFACTS,
            format!("artifacts[{i}].path: {why} {at}"),
        )
    };
    let root = super::beneath::resolve(dir, dir, workdir)
        .map_err(|e| StepError::new(events::ARTIFACTS, format!("workdir: {e}")))?;
    for (i, (a, entry)) in plan.iter().enumerate() {
        let mut place = root.clone();
        let mut shown = std::path::PathBuf::new();
        let parts: Vec<_> = a.path.components().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            place.push(part);
            shown.push(part);
            match std::fs::symlink_metadata(&place) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse(
                        i,
                        format!(
                            "{} is a symlink in the checkout; an artifact goes in a real directory",
                            shown.display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(refuse(
                        i,
                        format!("{} is a file in the checkout", shown.display()),
                    ))
                }
                Err(_) => std::fs::create_dir(&place)
                    .map_err(|e| refuse(i, format!("cannot create {}: {e}", shown.display())))?,
            }
        }
        let target = root.join(&a.path);
        if std::fs::symlink_metadata(&target).is_ok() {
            return Err(refuse(
                i,
                format!(
                    "{} is already in the checkout; take it out of the repository or give the artifact another path",
                    a.path.display()
                ),
            ));
        }
        std::os::unix::fs::symlink(entry, &target)
            .map_err(|e| refuse(i, format!("cannot link {}: {e}", a.path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates_read_well() {
        assert_eq!(took(Duration::from_millis(40)), "40 ms");
        assert_eq!(took(Duration::from_millis(3240)), "3.2 s");
        assert_eq!(took(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(rate(50 << 20, Duration::from_secs(1)), "50 MiB/s");
    }

    #[test]
    fn a_progress_line_says_how_far() {
        let p = Progress::default();
        assert_eq!(progress_line("m.pkl", &p, Duration::from_secs(2)), None);
        p.done.store(300 << 20, Ordering::Relaxed);
        p.total.store(1200 << 20, Ordering::Relaxed);
        p.transferred.store(100 << 20, Ordering::Relaxed);
        assert_eq!(
            progress_line("m.pkl", &p, Duration::from_secs(2)).as_deref(),
            Some("m.pkl: 300 MiB of 1.2 GiB (50 MiB/s)")
        );
    }
}
