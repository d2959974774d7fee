//! Kernel-enforced resource limits (memory, CPU, number of processes) for an app instance
//! or a build: a limit the kernel enforces holds however the app forks, and an app over
//! its memory is OOM-killed alone instead of the node's OOM killer picking anyone.
//!
//! Each controller is enforced through cgroup v2 where the agent can enable it for its
//! instances' membership cgroups ([`crate::cgroup`]), else through the agent's own group in
//! that controller's cgroup v1 hierarchy (hybrid nodes, older distributions), else not at
//! all: a limit asked for then is refused, not silently ignored.
//!
//! Layout on v1, one hierarchy per controller:
//! `<mount><the agent's own group>/deploy-agent/<agent key>/<instance id>`, as on v2.

mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod real_tests;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) use stats::{stats, Stats};
pub(crate) use v2::anchor;

/// The CFS period written with a CPU quota (µs): 100 ms, the kernel's default.
const CPU_PERIOD_USEC: u64 = 100_000;
/// The smallest CPU quota the kernel accepts (µs).
const CPU_MIN_QUOTA_USEC: u64 = 1_000;

/// Limits for every process of one instance (or one build).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Limits {
    /// Bytes of memory (RAM; swap is not granted on top of it).
    pub memory: Option<u64>,
    /// CPU time per wall time, in cores (0.5: half of one core; 2: two cores).
    pub cpus: Option<f64>,
    /// Processes and threads at once.
    pub pids: Option<u64>,
}

impl Limits {
    /// Whether no limit is asked for.
    pub(crate) fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }
}

/// Which limits can be enforced on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Support {
    pub memory: bool,
    pub cpu: bool,
    pub pids: bool,
}

/// The agent's groups (`.../deploy-agent/<key>`) in the v1 hierarchies it uses; `None`
/// where a controller is on v2 or not available.
#[derive(Debug, Clone, Default, PartialEq)]
struct V1Bases {
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
    /// Only when cpuacct is a hierarchy of its own (not co-mounted as `cpu,cpuacct`): the
    /// CPU usage of an instance is read there.
    cpuacct: Option<PathBuf>,
    pids: Option<PathBuf>,
}

impl V1Bases {
    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.memory, &self.cpu, &self.cpuacct, &self.pids]
            .into_iter()
            .flatten()
    }
}

/// Which controllers this node gives the agent, found once at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitsRoot {
    /// Controllers enabled for the instances' v2 membership cgroups.
    v2: Support,
    v1: V1Bases,
}

impl LimitsRoot {
    /// `key`: the agent key (a hash, keeps several agents on one node apart).
    /// `v2_dir`: the agent's v2 membership dir for apps (`CgroupRoot.dir`), when it has one.
    /// Blocking (a few files). Logs what it found.
    ///
    /// On v2 this may move the agent's processes into a leaf `<own cgroup>/agent`: a
    /// cgroup with processes cannot enable controllers for its children.
    pub(crate) fn detect(key: &str, v2_dir: Option<&Path>) -> LimitsRoot {
        let mut notes = Vec::new();
        let v2 = match v2_dir {
            Some(dir) => v2::enable(dir, &mut notes),
            None => Support::default(),
        };
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let v1 = v1::prepare(&mountinfo, &own, key, v2, &mut notes);
        let root = LimitsRoot { v2, v1 };
        tracing::info!(limits = %root.describe(), notes = %notes.join("; "), "resource limits");
        root
    }

    /// For --help/logs/errors: e.g. "memory, cpu, pids (cgroup v1)",
    /// "memory, pids (cgroup v2); cpu: unsupported", "none (no writable cgroup hierarchy)".
    pub(crate) fn describe(&self) -> String {
        let controllers = [
            ("memory", self.v2.memory, self.v1.memory.is_some()),
            ("cpu", self.v2.cpu, self.v1.cpu.is_some()),
            ("pids", self.v2.pids, self.v1.pids.is_some()),
        ];
        let named = |pick: fn(&(&str, bool, bool)) -> bool| {
            let names: Vec<&str> = controllers
                .iter()
                .filter(|c| pick(c))
                .map(|c| c.0)
                .collect();
            names.join(", ")
        };
        let on_v2 = named(|c| c.1);
        let on_v1 = named(|c| !c.1 && c.2);
        let missing = named(|c| !c.1 && !c.2);
        if on_v2.is_empty() && on_v1.is_empty() {
            return "none (no writable cgroup hierarchy)".to_string();
        }
        let mut parts = Vec::new();
        if !on_v2.is_empty() {
            parts.push(format!("{on_v2} (cgroup v2)"));
        }
        if !on_v1.is_empty() {
            parts.push(format!("{on_v1} (cgroup v1)"));
        }
        if !missing.is_empty() {
            parts.push(format!("{missing}: unsupported"));
        }
        parts.join("; ")
    }

    /// Which of memory/cpu/pids can be enforced.
    pub(crate) fn supports(&self) -> Support {
        Support {
            memory: self.v2.memory || self.v1.memory.is_some(),
            cpu: self.v2.cpu || self.v1.cpu.is_some(),
            pids: self.v2.pids || self.v1.pids.is_some(),
        }
    }

    /// Creates what one instance (or build) `id` needs and writes `limits` into it.
    ///
    /// On v2 the limits go into `v2_instance_dir` (the instance's membership cgroup,
    /// created by [`crate::cgroup::CgroupRoot::create`]). On v1 a group is created in each
    /// v1 hierarchy the agent uses (also for a controller without a limit, so [`stats`]
    /// has its usage) and their dirs are returned: open each one's `cgroup.procs` before
    /// the fork ([`crate::cgroup::procs_file`]) and [`crate::cgroup::join`] each in
    /// `pre_exec`. A limit this node cannot enforce is an error naming it. A controller
    /// without a limit is set to no limit ("max"), so a group reused (the same id after a
    /// crash) keeps no old limit. On error nothing created here is left.
    pub(crate) fn apply(
        &self,
        id: &str,
        v2_instance_dir: Option<&Path>,
        limits: &Limits,
    ) -> io::Result<Vec<PathBuf>> {
        check_id(id)?;
        self.check(limits)?;
        if self.v2 != Support::default() {
            let dir = v2_instance_dir.ok_or_else(|| {
                io::Error::other(format!(
                    "limits for {id}: no cgroup v2 of its own to write them into"
                ))
            })?;
            v2::write_limits(dir, self.v2, limits)?;
        }
        v1::apply(&self.v1, id, limits)
    }

    /// The v1 groups `apply` creates for `id` (whether they exist or not): for an instance
    /// recovered after a restart of the agent, and the `keep` list of `remove_unused`.
    #[allow(dead_code)] // Tests; recovery reads the dirs from the record.
    pub(crate) fn v1_dirs(&self, id: &str) -> Vec<PathBuf> {
        self.v1.all().map(|base| base.join(id)).collect()
    }

    /// Refuses limits this node cannot enforce, and nonsense.
    fn check(&self, limits: &Limits) -> io::Result<()> {
        let can = self.supports();
        let refused: Vec<&str> = [
            ("memory", limits.memory.is_some() && !can.memory),
            ("cpus", limits.cpus.is_some() && !can.cpu),
            ("pids", limits.pids.is_some() && !can.pids),
        ]
        .into_iter()
        .filter_map(|(name, refused)| refused.then_some(name))
        .collect();
        if !refused.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "this node cannot enforce a {} limit (cgroup limits here: {})",
                    refused.join(", "),
                    self.describe()
                ),
            ));
        }
        if let Some(cpus) = limits.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cpus limit {cpus}: must be a number of cores above 0"),
                ));
            }
        }
        Ok(())
    }

    /// Removes the empty v1 groups of this agent not in `keep` (left by a crash of the
    /// agent). v2 groups are the membership cgroups: `CgroupRoot::remove_unused`.
    pub(crate) fn remove_unused(&self, keep: &[PathBuf]) {
        for base in self.v1.all() {
            let Ok(entries) = fs::read_dir(base) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) && !keep.contains(&path) {
                    // Fails (EBUSY) while a process lives in it: then it is kept.
                    let _ = fs::remove_dir(&path);
                }
            }
        }
    }
}

/// The CPU quota per [`CPU_PERIOD_USEC`] for `cpus` cores.
fn cpu_quota(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_USEC as f64).round() as u64).max(CPU_MIN_QUOTA_USEC)
}

/// An instance id becomes a directory name: one plain path component.
fn check_id(id: &str) -> io::Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{id:?} cannot name a cgroup"),
        ));
    }
    Ok(())
}

/// Removes an instance's v1 groups once they are empty (EBUSY while they are not), like
/// [`crate::cgroup::remove`].
pub(crate) fn remove(v1_dirs: &[PathBuf]) {
    for dir in v1_dirs {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup not removed"),
        }
    }
}

/// Writes `value` into the existing control file `dir/name` (never creates one: a file
/// missing is a controller missing, and an error).
fn write(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    use std::io::Write;
    let path = dir.join(name);
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {value:?} to {}: {e}", path.display()),
            )
        })
}
