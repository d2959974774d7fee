//! A cgroup v2 per app instance, where the agent may create one (root, or a delegated
//! subtree such as systemd's `Delegate=yes`). Only membership is used, no controllers: a
//! process cannot leave its cgroup by `setsid` or a double fork, so every descendant of an
//! app is found (`cgroup.procs`), counted, and killed (`cgroup.kill`) with it.
//!
//! Layout: `<cgroup2 mount><the agent's own cgroup>/deploy-agent/<agent key>/<instance id>`.
//! The agent key (a hash of the data directory) keeps several agents on one node apart.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where this agent creates its instances' cgroups.
#[derive(Debug, Clone)]
pub(crate) struct CgroupRoot {
    pub dir: PathBuf,
}

impl CgroupRoot {
    /// The agent's cgroup directory for apps, created if need be; `None` (with the reason
    /// logged) when there is no cgroup v2 hierarchy or the agent may not write to it.
    pub(crate) fn detect(key: &str) -> Option<CgroupRoot> {
        let found = (|| {
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
            let mount = cgroup2_mount(&mountinfo)?;
            let own = own_cgroup(&fs::read_to_string("/proc/self/cgroup").ok()?)?;
            Some((mount, own))
        })();
        let Some((mount, own)) = found else {
            tracing::info!("no cgroup v2 hierarchy: apps are tracked by process group and an environment marker");
            return None;
        };
        // Under systemd's `DelegateSubgroup=agent` the agent runs in `<unit>/agent`: its apps'
        // cgroups stay beside it, under the unit.
        let base = mount.join(crate::limits::anchor(&own).trim_start_matches('/'));
        let dir = base.join("deploy-agent").join(key);
        // Moving a child out of our own cgroup needs write access to our cgroup.procs too.
        let usable = fs::create_dir_all(&dir).is_ok()
            && nix::unistd::access(&base.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK)
                .is_ok()
            && nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
        if !usable {
            tracing::info!(cgroup = %dir.display(), "cannot create cgroups here: apps are tracked by process group and an environment marker");
            return None;
        }
        tracing::info!(cgroup = %dir.display(), "each app instance gets its own cgroup");
        Some(CgroupRoot { dir })
    }

    /// Creates the cgroup of one instance.
    pub(crate) fn create(&self, id: &str) -> io::Result<PathBuf> {
        let dir = self.dir.join(id);
        match fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(dir),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("creating cgroup {}: {e}", dir.display()),
            )),
        }
    }

    /// Removes the empty cgroups of instances not in `keep` (left by a crash of the agent).
    pub(crate) fn remove_unused(&self, keep: &[PathBuf]) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
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

/// The cgroup2 mount point from `/proc/self/mountinfo`.
fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// The agent's own cgroup v2 path (the `0::PATH` line of `/proc/self/cgroup`).
fn own_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
}

/// `cgroup.procs`, opened by the agent (root, or the delegated owner) before a child is
/// forked: the child writes "0" to it in `pre_exec` and is in its cgroup before it runs a
/// single instruction of the app. The kernel checks the opener's credentials, so this also
/// works for an app that `run_as` made unprivileged just before.
pub(crate) fn procs_file(dir: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening {}: {e}", dir.join("cgroup.procs").display()),
            )
        })
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `file`. Async-signal
/// safe (one write, no allocation): meant for `pre_exec`.
pub(crate) fn join(mut file: &fs::File) -> io::Result<()> {
    file.write_all(b"0")
}

/// The processes in a cgroup (thread group ids; zombies are not listed).
pub(crate) fn procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether any live task (any thread of any process) is in the cgroup; `None` when the
/// cgroup does not exist.
pub(crate) fn populated(dir: &Path) -> Option<bool> {
    let text = fs::read_to_string(dir.join("cgroup.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() == "1")
}

/// SIGKILLs every process of the cgroup, including ones forked meanwhile (`cgroup.kill`,
/// Linux 5.14+; before that, each listed process, which can miss one forked during it).
pub(crate) fn kill(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for pid in procs(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Removes an instance's cgroup once it is empty (EBUSY while it is not).
pub(crate) fn remove(dir: &Path) {
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup not removed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_and_own_path() {
        let mountinfo = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount("31 23 0:28 / /x rw - tmpfs tmpfs rw\n"), None);
        let own = "4:memory:/x\n0::/system.slice/deploy-agent.service\n";
        assert_eq!(
            own_cgroup(own).as_deref(),
            Some("/system.slice/deploy-agent.service")
        );
    }
}
