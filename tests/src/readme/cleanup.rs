//! What the README's commands leave running (agents, node proxies, apps) and the cgroups
//! the agents made, removed when the test ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{strip_ansi, wait_until};

/// SIGKILLs every process whose command line names `root` or that runs in it.
pub fn kill_under(root: &Path) {
    use nix::sys::signal::{kill, Signal};
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cwd = fs::read_link(e.path().join("cwd")).unwrap_or_default();
        let mine = String::from_utf8_lossy(&cmdline).contains(&*root.to_string_lossy())
            || cwd.starts_with(root);
        if mine && pid > 1 && pid != me {
            let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Removes the cgroups the agents under `root` made for their apps (named in their logs:
/// `each app instance gets its own cgroup cgroup=DIR`), once their processes are gone.
pub fn remove_cgroups_named_under(root: &Path, logs: &[&str]) {
    for log in logs.iter().map(|l| root.join(l)) {
        let text = strip_ansi(&fs::read_to_string(log).unwrap_or_default());
        let dirs = text
            .lines()
            .filter(|l| l.contains("each app instance gets its own cgroup"))
            .filter_map(|l| l.split("cgroup=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(PathBuf::from);
        for dir in dirs {
            let subdirs = fs::read_dir(&dir).into_iter().flatten().flatten();
            for sub in subdirs.map(|e| e.path()).filter(|p| p.is_dir()) {
                let _ = fs::write(sub.join("cgroup.kill"), "1");
                wait_until(Duration::from_secs(2), || fs::remove_dir(&sub).is_ok());
            }
            let _ = fs::remove_dir(&dir);
        }
    }
}
