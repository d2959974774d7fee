//! cgroup v2: enabling memory, cpu and pids for the instances' membership cgroups
//! ([`crate::cgroup`]), and writing limits into one of them.
//!
//! A controller reaches `<own>/deploy-agent/<key>/<id>` only when it is enabled in the
//! `cgroup.subtree_control` of `<own>`, `<own>/deploy-agent` and `<own>/deploy-agent/<key>`.
//! `<own>` must have it itself (systemd's `Delegate=yes` gives it; otherwise whoever made
//! the agent's cgroup did or did not).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{cpu_quota, write, Limits, Support, CPU_PERIOD_USEC};

/// The controllers the agent uses.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// The leaf cgroup the agent's own processes move into (from `<own>`), so that `<own>` has
/// none and may enable controllers for its children: cgroup v2's "no internal processes"
/// rule, the way systemd documents for delegated subtrees.
pub(super) const AGENT_LEAF: &str = "agent";

/// The cgroup path (as in the `0::PATH` line of `/proc/self/cgroup`) to lay the agent's
/// cgroups out below: the agent's own, or its parent when the agent is in the leaf
/// [`AGENT_LEAF`] (moved there by [`enable`] before a restart, or put there by systemd's
/// `DelegateSubgroup=agent`). So the layout is the same across restarts, and the delegated
/// cgroup, whose `cgroup.subtree_control` has controllers, holds no process: systemd could
/// not start the agent again in it (EBUSY, "status=219/CGROUP").
pub(crate) fn anchor(own: &str) -> &str {
    match own.strip_suffix(AGENT_LEAF) {
        Some("/") => "/",
        Some(parent) if parent.len() > 1 && parent.ends_with('/') => &parent[..parent.len() - 1],
        _ => own,
    }
}

/// Enables what it can of memory, cpu and pids from the agent's own cgroup down to
/// `key_dir` (`<own>/deploy-agent/<key>`), each controller on its own so one missing does
/// not stop the others; says which are now available to the instances' cgroups. Why one
/// is not goes to `notes`.
pub(super) fn enable(key_dir: &Path, notes: &mut Vec<String>) -> Support {
    let Some(own) = key_dir.parent().and_then(Path::parent) else {
        return Support::default();
    };
    let mut levels = vec![own.to_path_buf()];
    if let Ok(below) = key_dir.strip_prefix(own) {
        for part in below {
            let next = levels[levels.len() - 1].join(part);
            levels.push(next);
        }
    }
    let mut alive: Vec<&str> = CONTROLLERS.to_vec();
    for (i, level) in levels.iter().enumerate() {
        let available = words(&level.join("cgroup.controllers"));
        alive.retain(|c| {
            let ok = available.iter().any(|a| a == c);
            if !ok {
                notes.push(format!(
                    "cgroup v2: no {c} in {}",
                    level.join("cgroup.controllers").display()
                ));
            }
            ok
        });
        let enabled = words(&level.join("cgroup.subtree_control"));
        let missing: Vec<&str> = alive
            .iter()
            .copied()
            .filter(|c| !enabled.iter().any(|e| e == c))
            .collect();
        if missing.is_empty() {
            continue;
        }
        if i == 0 && !is_root(level) && !crate::cgroup::procs(level).is_empty() {
            move_to_leaf(level, notes);
        }
        for c in missing {
            if let Err(e) = write(level, "cgroup.subtree_control", &format!("+{c}")) {
                notes.push(format!("cgroup v2: {e}"));
                alive.retain(|a| *a != c);
            }
        }
    }
    Support {
        memory: alive.contains(&"memory"),
        cpu: alive.contains(&"cpu"),
        pids: alive.contains(&"pids"),
    }
}

/// Whether `dir` is the root of its hierarchy (exempt from "no internal processes"): only
/// non-root cgroups have `cgroup.type`. A cgroup namespace's root is not the real root.
fn is_root(dir: &Path) -> bool {
    !dir.join("cgroup.type").exists()
}

/// Moves every process of `own` into `<own>/agent` (a few rounds: one may fork meanwhile).
fn move_to_leaf(own: &Path, notes: &mut Vec<String>) {
    let leaf = own.join(AGENT_LEAF);
    if let Err(e) = fs::create_dir(&leaf) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            notes.push(format!("cgroup v2: creating {}: {e}", leaf.display()));
            return;
        }
    }
    let mut moved = Vec::new();
    for _ in 0..5 {
        let pids = crate::cgroup::procs(own);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            match write(&leaf, "cgroup.procs", &pid.to_string()) {
                Ok(()) => moved.push(pid),
                // Exited meanwhile.
                Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => {}
                Err(e) => {
                    notes.push(format!("cgroup v2: {e}"));
                    return;
                }
            }
        }
    }
    tracing::warn!(cgroup = %leaf.display(), pids = ?moved, "moved the agent's processes into a leaf cgroup, so its cgroup can enable controllers for the apps'; under systemd set DelegateSubgroup=agent (systemd 254+), or starting the agent again while apps run fails (status=219/CGROUP)");
}

/// The words of a file such as `cgroup.controllers`; none when it cannot be read.
fn words(path: &PathBuf) -> Vec<String> {
    fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Writes `limits` into the instance's cgroup `dir` for the controllers in `on`; one
/// without a limit is set to "max".
pub(super) fn write_limits(dir: &Path, on: Support, limits: &Limits) -> io::Result<()> {
    if on.memory {
        let max = limits.memory.map_or("max".to_string(), |b| b.to_string());
        write(dir, "memory.max", &max)?;
        // Without swap accounting (no such file) the limit is on RAM alone.
        if dir.join("memory.swap.max").exists() {
            let swap = if limits.memory.is_some() { "0" } else { "max" };
            write(dir, "memory.swap.max", swap)?;
        }
    }
    if on.cpu {
        let quota = limits
            .cpus
            .map_or("max".to_string(), |c| cpu_quota(c).to_string());
        write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_USEC}"))?;
    }
    if on.pids {
        let max = limits.pids.map_or("max".to_string(), |n| n.to_string());
        write(dir, "pids.max", &max)?;
    }
    Ok(())
}
