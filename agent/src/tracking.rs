//! Which processes belong to an app instance: every descendant of the app, including ones
//! that left its process group (`setsid`, a double fork). Each instance (one start of an
//! app) gets an id; its processes are found by
//!
//! * its cgroup v2 (see [`crate::cgroup`]) where the agent can create one: no process can
//!   leave it, and `cgroup.kill` kills them all at once;
//! * otherwise the marker `DEPLOY_INSTANCE=<key>/<id>` in its environment (inherited by
//!   everything the app starts), read from `/proc/PID/environ`; the agent is the child
//!   subreaper, so daemonized descendants stay its children and are reaped;
//! * and always its process group (apps adopted from records written before instance ids).
//!
//! A process counts as alive while any of its threads is: a multi-threaded server whose
//! main thread exited still holds its sockets.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::cgroup::{self, CgroupRoot};
use crate::procstat;

/// The environment variable that marks every process of an instance.
pub(crate) const MARKER_VAR: &str = "DEPLOY_INSTANCE";

/// How one instance's processes are found; kept in the node record for re-adoption.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tracking {
    /// `<agent key>/<deployment>@<release>.<nonce>`: the marker's value ("" for processes
    /// that are not apps, e.g. start scripts, and for records written before instance ids).
    #[serde(default)]
    pub id: String,
    /// The instance's cgroup, when it has one.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// Its cgroup v1 groups (memory, cpu, pids) where its limits are enforced on a node
    /// without those controllers in cgroup v2 (on v2 they are in `cgroup`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<PathBuf>,
}

impl Tracking {
    /// The `cgroup.procs` files a new process of the instance writes itself into (opened
    /// now, before the fork).
    pub(crate) fn cgroup_files(&self) -> std::io::Result<Vec<std::fs::File>> {
        let mut files = Vec::new();
        for dir in self.cgroup.iter().chain(&self.limits) {
            files.push(cgroup::procs_file(dir)?);
        }
        Ok(files)
    }

    /// What the kernel says of its resources (memory, OOM kills, CPU, throttling).
    pub(crate) fn stats(&self) -> crate::limits::Stats {
        crate::limits::stats(self.cgroup.as_deref(), &self.limits)
    }

    /// The deployment an instance id names (`key/name@release.nonce`).
    pub(crate) fn deployment(id: &str) -> Option<&str> {
        id.split_once('/')?.1.rsplit_once('@').map(|(n, _)| n)
    }
}

/// Creates each instance's tracking: its id, and its cgroup where there can be one.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// A hash of the data directory: several agents on one node keep apart.
    key: String,
    cgroups: Option<CgroupRoot>,
    /// Where resource limits can be enforced.
    limits: crate::limits::LimitsRoot,
}

impl Tracker {
    /// Looks for a usable cgroup v2 hierarchy when `use_cgroups` (blocking: a few files).
    pub(crate) fn new(data_dir: &Path, use_cgroups: bool) -> Tracker {
        let dir = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let hash = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let key: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        let cgroups = if use_cgroups {
            CgroupRoot::detect(&key)
        } else {
            None
        };
        let limits = if use_cgroups {
            crate::limits::LimitsRoot::detect(&key, cgroups.as_ref().map(|c| c.dir.as_path()))
        } else {
            crate::limits::LimitsRoot::default()
        };
        tracing::info!(limits = %limits.describe(), "resource limits this node enforces");
        Tracker {
            key,
            cgroups,
            limits,
        }
    }

    /// Where resource limits can be enforced here.
    pub(crate) fn limits(&self) -> &crate::limits::LimitsRoot {
        &self.limits
    }

    /// A new instance of `name` at `release`. Without a cgroup (none here, or creating it
    /// failed, which is logged), the marker alone tracks it.
    pub(crate) fn new_instance(
        &self,
        name: &str,
        release: u32,
        limits: &crate::limits::Limits,
    ) -> std::io::Result<Tracking> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let local = format!("{name}@{release}.{now:x}{seq:x}");
        let cgroup = self
            .cgroups
            .as_ref()
            .and_then(|root| match root.create(&local) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    tracing::warn!(deployment = name, error = %e, "no cgroup for this instance: tracked by its environment marker");
                    None
                }
            });
        let limits = if limits.is_empty() {
            Vec::new()
        } else {
            self.limits.apply(&local, cgroup.as_deref(), limits)?
        };
        Ok(Tracking {
            id: format!("{}/{local}", self.key),
            cgroup,
            limits,
        })
    }

    /// Whether a process belongs to one of this agent's instances: the instance id.
    pub(crate) fn owner_of(&self, pid: u32) -> Option<String> {
        if self.cgroups.is_some() {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
            let suffix = format!("/deploy-agent/{}/", self.key);
            if let Some(i) = path.find(&suffix) {
                let local = path[i + suffix.len()..].split('/').next()?;
                return Some(format!("{}/{local}", self.key));
            }
        }
        let id = marker_of(pid)?;
        id.starts_with(&format!("{}/", self.key)).then_some(id)
    }

    /// Removes cgroups of this agent that no instance in `keep` uses and no process is in
    /// (a few rmdirs, on a blocking thread).
    pub(crate) async fn remove_unused(self: &Arc<Self>, keep: Vec<PathBuf>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(root) = &me.cgroups {
                root.remove_unused(&keep);
            }
            me.limits.remove_unused(&keep);
        })
        .await;
    }

    /// When the agent stops: the cgroups of instances that ended, and the agent's own
    /// directory if no app runs (the apps that run keep theirs).
    pub(crate) async fn on_shutdown(self: &Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(root) = &me.cgroups {
                root.remove_unused(&[]);
                let _ = std::fs::remove_dir(&root.dir);
            }
            me.limits.remove_unused(&[]);
        })
        .await;
    }
}

/// The value of a process's marker, if it has one (and its environment can be read).
fn marker_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{MARKER_VAR}=");
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Every pid in `/proc`.
fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The live processes of an instance whose first process (the group leader) is `leader`.
pub(crate) fn members(leader: u32, t: &Tracking) -> Vec<u32> {
    members_of_all(&[(leader, t.clone())])
        .pop()
        .unwrap_or_default()
}

/// [`members`] of several instances, with one pass over `/proc` for all of them.
pub(crate) fn members_of_all(apps: &[(u32, Tracking)]) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = apps
        .iter()
        .map(|(_, t)| t.cgroup.as_deref().map(cgroup::procs).unwrap_or_default())
        .collect();
    // Without a cgroup the marker is read from every process (that the agent may read).
    let by_marker = apps
        .iter()
        .any(|(_, t)| t.cgroup.is_none() && !t.id.is_empty());
    for pid in all_pids() {
        let Some(stat) = procstat::read(pid) else {
            continue;
        };
        let marker = if by_marker { marker_of(pid) } else { None };
        for (i, (leader, t)) in apps.iter().enumerate() {
            let in_group = *leader > 1 && stat.pgrp == *leader;
            let marked =
                t.cgroup.is_none() && !t.id.is_empty() && marker.as_deref() == Some(t.id.as_str());
            if in_group || marked {
                out[i].push(pid);
            }
        }
    }
    for pids in &mut out {
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|p| procstat::process_alive(*p));
    }
    out
}

/// Whether any process of the instance is alive (any thread of any of them).
pub(crate) fn alive(leader: u32, t: &Tracking) -> bool {
    if let Some(dir) = &t.cgroup {
        if cgroup::populated(dir) == Some(true) {
            return true;
        }
        // Only processes outside the cgroup remain to be looked for: its group.
        return leader > 1 && procstat::group_has_live_member(leader);
    }
    !members(leader, t).is_empty()
}

/// Sends `sig` to every process of the instance: its process group (unless `group` is
/// false: the leader's pid may be another process's now), its cgroup or its marked
/// processes. Returns whether there was any process to signal.
pub(crate) fn signal(leader: u32, t: &Tracking, sig: Signal, group: bool) -> bool {
    let mut any = group && signal_group(leader, sig);
    match &t.cgroup {
        Some(dir) if sig == Signal::SIGKILL => {
            any |= cgroup::populated(dir) == Some(true);
            cgroup::kill(dir);
        }
        _ => {
            for pid in members(leader, t) {
                if !group || procstat::read(pid).is_none_or(|s| s.pgrp != leader) {
                    any |= kill(Pid::from_raw(pid as i32), sig).is_ok();
                }
            }
        }
    }
    any
}

/// Cleans up after an instance whose processes are all gone (its cgroup).
pub(crate) fn release(t: &Tracking) {
    if let Some(dir) = &t.cgroup {
        cgroup::remove(dir);
    }
    crate::limits::remove(&t.limits);
}

/// Sends `sig` to the process group; `false` when the group no longer exists (ESRCH).
pub(crate) fn signal_group(pgid: u32, sig: Signal) -> bool {
    use nix::{errno::Errno, sys::signal::killpg, unistd::Pid};
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pgid, %sig, error = %e, "could not signal process group");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_names_its_deployment() {
        assert_eq!(
            Tracking::deployment("0a1b2c/my.app-1@3.18c2f0"),
            Some("my.app-1")
        );
        assert_eq!(Tracking::deployment(""), None);
    }
}
