//! cgroup v1: one hierarchy per controller (memory, cpu, cpuacct, pids), each mounted on
//! its own or co-mounted (`cpu,cpuacct`). The agent's groups go below its own group in
//! each: `<mount><own path>/deploy-agent/<key>/<id>`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{cpu_quota, write, Limits, Support, V1Bases, CPU_PERIOD_USEC};

/// What a v1 group of an instance is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Cpu,
    /// Accounting only (CPU usage), when not co-mounted with cpu.
    Cpuacct,
    Pids,
}

/// The agent's own group in `controller`'s v1 hierarchy: `<mount><own path>`, from
/// `/proc/self/mountinfo` (fstype `cgroup`, the controller among the super options) and
/// `/proc/self/cgroup` (`N:memory:/path`, `N:cpu,cpuacct:/path`).
pub(super) fn own_dir(mountinfo: &str, proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    let (root, mount) = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        let mut left = left.split_whitespace();
        let (root, mount) = (left.nth(3)?, left.next()?);
        (fstype == "cgroup" && options.split(',').any(|o| o == controller)).then_some((root, mount))
    })?;
    let own = proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path.trim())
    })?;
    // A hierarchy mounted from below its root (a container without a cgroup namespace)
    // shows the path from the root in /proc/self/cgroup.
    let inside = match own.strip_prefix(root) {
        Some(rest) if root != "/" && (rest.is_empty() || rest.starts_with('/')) => rest,
        _ => own,
    };
    Some(Path::new(mount).join(inside.trim_start_matches('/')))
}

/// The agent's base groups (`deploy-agent/<key>`, created) in the v1 hierarchies of the
/// controllers not on v2 (`v2`), where it may create and move processes. Why one is not
/// usable goes to `notes`.
pub(super) fn prepare(
    mountinfo: &str,
    proc_cgroup: &str,
    key: &str,
    v2: Support,
    notes: &mut Vec<String>,
) -> V1Bases {
    let mut base = |controller: &str| {
        let Some(own) = own_dir(mountinfo, proc_cgroup, controller) else {
            notes.push(format!("cgroup v1: no {controller} hierarchy"));
            return None;
        };
        make_base(&own, key)
            .map_err(|e| notes.push(format!("cgroup v1: {e}")))
            .ok()
    };
    let memory = if v2.memory { None } else { base("memory") };
    let cpu = if v2.cpu { None } else { base("cpu") };
    let separate_cpuacct = own_dir(mountinfo, proc_cgroup, "cpuacct")
        .is_some_and(|d| Some(d) != own_dir(mountinfo, proc_cgroup, "cpu"));
    let cpuacct = if cpu.is_some() && separate_cpuacct {
        base("cpuacct")
    } else {
        None
    };
    let pids = if v2.pids { None } else { base("pids") };
    V1Bases {
        memory,
        cpu,
        cpuacct,
        pids,
    }
}

/// Creates `<own>/deploy-agent/<key>` and checks the agent may create groups in it and
/// move its children out of `<own>` (like [`crate::cgroup::CgroupRoot::detect`]).
fn make_base(own: &Path, key: &str) -> io::Result<PathBuf> {
    use nix::unistd::{access, AccessFlags};
    let dir = own.join("deploy-agent").join(key);
    fs::create_dir_all(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    for path in [own.join("cgroup.procs"), dir.clone()] {
        access(&path, AccessFlags::W_OK)
            .map_err(|e| io::Error::other(format!("no write access to {}: {e}", path.display())))?;
    }
    Ok(dir)
}

/// Creates the groups of instance `id` in every hierarchy of `bases` and writes `limits`;
/// returns their dirs. On error, removes the groups it created.
pub(super) fn apply(bases: &V1Bases, id: &str, limits: &Limits) -> io::Result<Vec<PathBuf>> {
    let all = [
        (&bases.memory, Kind::Memory),
        (&bases.cpu, Kind::Cpu),
        (&bases.cpuacct, Kind::Cpuacct),
        (&bases.pids, Kind::Pids),
    ];
    let mut dirs = Vec::new();
    let mut created = Vec::new();
    let mut result = Ok(());
    for (base, kind) in all {
        let Some(base) = base else { continue };
        let dir = base.join(id);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                result = Err(io::Error::new(
                    e.kind(),
                    format!("creating cgroup {}: {e}", dir.display()),
                ));
                break;
            }
        }
        dirs.push(dir.clone());
        result = write_limits(&dir, kind, limits);
        if result.is_err() {
            break;
        }
    }
    match result {
        Ok(()) => Ok(dirs),
        Err(e) => {
            super::remove(&created);
            Err(e)
        }
    }
}

/// Writes the limit of `kind` into group `dir`; none is "-1"/"max".
fn write_limits(dir: &Path, kind: Kind, limits: &Limits) -> io::Result<()> {
    match kind {
        Kind::Memory => {
            let value = limits.memory.map_or("-1".to_string(), |b| b.to_string());
            // memsw (memory + swap) may never be below memory: unlimited first, then memory,
            // then memsw the same (no swap on top), whichever way the limit moves. Without
            // swap accounting (no such file) the limit is on RAM alone.
            let memsw = "memory.memsw.limit_in_bytes";
            let has_memsw = dir.join(memsw).exists();
            if has_memsw {
                write(dir, memsw, "-1")?;
            }
            write(dir, "memory.limit_in_bytes", &value)?;
            if has_memsw {
                write(dir, memsw, &value)?;
            }
            Ok(())
        }
        Kind::Cpu => {
            write(dir, "cpu.cfs_period_us", &CPU_PERIOD_USEC.to_string())?;
            let quota = limits
                .cpus
                .map_or("-1".to_string(), |c| cpu_quota(c).to_string());
            write(dir, "cpu.cfs_quota_us", &quota)
        }
        Kind::Cpuacct => Ok(()),
        Kind::Pids => {
            let max = limits.pids.map_or("max".to_string(), |n| n.to_string());
            write(dir, "pids.max", &max)
        }
    }
}
