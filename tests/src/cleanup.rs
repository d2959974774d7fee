//! What a test's agent leaves behind by design (apps outlive their agent) and the test
//! must not: the apps' processes and their cgroups.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::{strip_ansi, Agent};

impl Agent {
    /// The directory the agent makes its apps' cgroups in, as its log names it (`None`: it
    /// made none, e.g. no writable cgroup v2 hierarchy or `cgroups = false`).
    pub fn cgroup_dir(&self) -> Option<PathBuf> {
        let log = strip_ansi(&self.stderr());
        // Text (`cgroup=/sys/...`) or JSON (`"cgroup":"/sys/..."`) lines.
        log.lines()
            .filter(|l| l.contains("each app instance gets its own cgroup"))
            .find_map(|l| {
                l.split(|c: char| c.is_whitespace() || matches!(c, '"' | '=' | ','))
                    .find(|w| w.starts_with('/') && w.contains("/deploy-agent/"))
            })
            .map(PathBuf::from)
    }

    /// The cgroups of app instances in [`Agent::cgroup_dir`].
    pub fn instance_cgroups(&self) -> Vec<PathBuf> {
        let Some(dir) = self.cgroup_dir() else {
            return Vec::new();
        };
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes the (empty, once its apps are killed) cgroups the agent made for its apps.
    pub fn remove_cgroups(&self) {
        for dir in self.instance_cgroups() {
            // cgroup.kill first: a process may still be on its way out.
            let _ = fs::write(dir.join("cgroup.kill"), "1");
            crate::wait_until(Duration::from_secs(2), || fs::remove_dir(&dir).is_ok());
        }
        if let Some(dir) = self.cgroup_dir() {
            let _ = fs::remove_dir(dir);
        }
    }

    /// SIGKILLs every app this agent started: the process groups named in the records, and
    /// any process whose working directory is inside the data directory (a safety net for a
    /// record written late or a group left by a failed release).
    pub fn kill_apps(&self) {
        for pid in self.app_pids() {
            if pid > 1 {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let me = std::process::id();
        let Ok(procs) = fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me || pid <= 1 {
                continue;
            }
            if let Ok(cwd) = fs::read_link(entry.path().join("cwd")) {
                if cwd.starts_with(&self.data_dir) {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        }
    }
}
