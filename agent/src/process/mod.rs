//! Child processes: each app and each script runs in its own process group, with stdin
//! closed; apps write to log files (never pipes, so they outlive the agent). Stopping is one
//! function ([`stop_group`], in `stop.rs`): SIGTERM to the group, a grace period, then
//! SIGKILL. Short-lived commands (installers, start scripts) run in `captured.rs`.
//! What reads `/proc` here does so on a blocking thread, so callers cannot get it wrong.

mod captured;
mod stop;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};

use crate::procstat::ProcId;
use crate::tracking::Tracking;

pub(crate) use captured::run_captured;
pub(crate) use stop::{port_free, stop_group, stop_group_releasing, Stopped};

/// What a process needs to start: the command line, its directory and its environment.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// Run with `sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    /// Added to the agent's own environment.
    pub env: Vec<(String, String)>,
    /// Prepended to PATH (the Python environment's `bin`).
    pub path_prefix: Option<PathBuf>,
    /// Its own user, mount namespace and clean environment (when the agent is root);
    /// `None`: it runs as the agent's user with the agent's environment.
    pub walls: Option<crate::walls::Walls>,
    /// Cgroups its processes join (a build's, with its `build_memory` limit).
    pub cgroups: Vec<PathBuf>,
}

impl Launch {
    /// `program args...` with the launch's directory and environment, in a new process group.
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> io::Result<Command> {
        self.command_in(program, args, Vec::new())
    }

    /// [`Launch::command`], the child joining the cgroups whose `cgroup.procs` files are
    /// `cgroups` (opened here, before the fork) before it raises its walls and runs.
    pub(crate) fn command_in(
        &self,
        program: &str,
        args: &[&str],
        mut cgroups: Vec<std::fs::File>,
    ) -> io::Result<Command> {
        for dir in &self.cgroups {
            cgroups.push(crate::cgroup::procs_file(dir)?);
        }
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&self.cwd);
        match &self.walls {
            Some(w) => {
                cmd.env_clear();
                for (k, v) in crate::walls::base_env(w, self.path_prefix.as_deref()) {
                    cmd.env(k, v);
                }
            }
            None => {
                cmd.env_remove("PYTHONHOME");
                if let Some(prefix) = &self.path_prefix {
                    let old = std::env::var_os("PATH").unwrap_or_default();
                    let mut paths = vec![prefix.clone()];
                    paths.extend(std::env::split_paths(&old));
                    if let Ok(joined) = std::env::join_paths(paths) {
                        cmd.env("PATH", joined);
                    }
                }
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            // A new process group: the whole app (and what it spawns) is signalled together.
            .process_group(0);
        let walls = self.walls.as_ref().map(|w| w.prepare()).transpose()?;
        if walls.is_some() || !cgroups.is_empty() {
            // SAFETY: runs in the forked child before exec: write(2) on files opened before
            // the fork, then the walls' plain system calls (no allocation, no lock).
            unsafe {
                cmd.pre_exec(move || {
                    for f in &cgroups {
                        crate::cgroup::join(f)?;
                    }
                    match &walls {
                        Some(w) => w.enter(),
                        None => Ok(()),
                    }
                });
            }
        }
        Ok(cmd)
    }
}

/// Starts an app with stdout and stderr appended to `log` (one file, in order), as the
/// instance `tracking` names: marked in its environment, and in its cgroup (if it has one)
/// before it runs, so nothing it starts can escape either.
pub(crate) fn spawn_app(
    launch: &Launch,
    log: &Path,
    tracking: &Tracking,
) -> io::Result<AppProcess> {
    let file = crate::fsmode::append_private(log)?;
    let err = file.try_clone()?;
    let cgroups = tracking.cgroup_files()?;
    let mut cmd = launch.command_in("sh", &["-c", &launch.command], cgroups)?;
    cmd.stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .env(crate::tracking::MARKER_VAR, &tracking.id)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|e| {
        // What of ours can fail in the child before exec.
        if e.raw_os_error() == Some(nix::libc::ENOENT) {
            return e;
        }
        let mut ours = Vec::new();
        if let Some(dir) = &tracking.cgroup {
            ours.push(format!("joining cgroup {}", dir.display()));
        }
        if launch.walls.is_some() {
            ours.push("raising its walls (mount namespace, private /tmp, its user)".to_string());
        }
        if ours.is_empty() {
            return e;
        }
        io::Error::new(e.kind(), format!("{e} (or {})", ours.join(", or ")))
    })?;
    Ok(AppProcess::child(child).tracked(tracking.clone()))
}

/// How an app's process ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Exit {
    /// Our child: its exit status.
    Status(ExitStatus),
    /// An adopted process (not our child) is gone; its exit status is not ours to know.
    Vanished,
}

impl Exit {
    /// The exit code (128 + signal for a signal death); `None` when unknown.
    pub(crate) fn code(self) -> Option<i32> {
        match self {
            Exit::Status(st) => Some(exit_code(st)),
            Exit::Vanished => None,
        }
    }

    /// The exit code (128 + signal for a signal death) and the signal, when known.
    pub(crate) fn code_and_signal(self) -> (Option<i32>, Option<i32>) {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Exit::Status(st) => (Some(exit_code(st)), st.signal()),
            Exit::Vanished => (None, None),
        }
    }

    /// "exited with code 3", "was killed by SIGKILL", "ended (exit status unknown: ...)".
    pub(crate) fn describe(self) -> String {
        match self {
            Exit::Status(st) => describe_exit(st),
            Exit::Vanished => {
                "ended (exit status unknown: it was started by an earlier run of the agent)"
                    .to_string()
            }
        }
    }
}

/// How often an adopted process is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// An app's process, the leader of its process group: either our child, or a process
/// adopted after an agent restart (watched by polling `/proc`, identified by pid and start
/// time so that a reused pid is never taken for it).
#[derive(Debug)]
pub(crate) struct AppProcess {
    pub id: ProcId,
    /// `None` for an adopted process.
    child: Option<Child>,
    /// How the rest of its processes are found (descendants that left its group).
    pub tracking: Tracking,
}

impl AppProcess {
    pub(crate) fn child(child: Child) -> AppProcess {
        let pid = child.id().unwrap_or(0);
        // Read at once: the child exists (at worst as a zombie, which still has its stat).
        let start_time = ProcId::of(pid).map(|p| p.start_time).unwrap_or(0);
        AppProcess {
            id: ProcId { pid, start_time },
            child: Some(child),
            tracking: Tracking::default(),
        }
    }

    /// Takes over a running process started by an earlier run of the agent.
    pub(crate) fn adopt(id: ProcId, tracking: Tracking) -> AppProcess {
        AppProcess {
            id,
            child: None,
            tracking,
        }
    }

    fn tracked(mut self, tracking: Tracking) -> AppProcess {
        self.tracking = tracking;
        self
    }

    /// Whether any of its processes (the group, the cgroup, the marked ones) is alive.
    pub(crate) async fn members_alive(&self) -> bool {
        let (pid, tracking) = (self.id.pid, self.tracking.clone());
        // Unknown (the check panicked): alive, so a stop goes on to SIGKILL.
        blocking(move || crate::tracking::alive(pid, &tracking), true).await
    }

    pub(crate) fn pid(&self) -> u32 {
        self.id.pid
    }

    /// Whether it was adopted rather than started by this run.
    pub(crate) fn adopted(&self) -> bool {
        self.child.is_none()
    }

    /// The exit, if it has ended (reaping our child).
    pub(crate) async fn try_wait(&mut self) -> Option<Exit> {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().map(Exit::Status),
            None => (!self.adopted_running().await).then_some(Exit::Vanished),
        }
    }

    /// Whether the adopted process (same pid, same start time) still runs.
    async fn adopted_running(&self) -> bool {
        let id = self.id;
        blocking(move || id.is_running(), true).await
    }

    /// Waits for it to end. Cancel-safe.
    pub(crate) async fn wait(&mut self) -> Exit {
        match &mut self.child {
            Some(c) => match c.wait().await {
                Ok(st) => Exit::Status(st),
                Err(e) => {
                    tracing::warn!(pid = self.id.pid, error = %e, "lost track of the app");
                    Exit::Vanished
                }
            },
            None => loop {
                if !self.adopted_running().await {
                    return Exit::Vanished;
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            },
        }
    }
}

/// Runs `f` (which reads `/proc` or the file system) on a blocking thread; `fallback` if
/// it panicked.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static, fallback: T) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or(fallback)
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}

/// A human description of an exit status: "exited with code 3" / "was killed by SIGKILL".
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("was killed by {s}"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        (None, None) => "ended".to_string(),
    }
}

/// Gives a directory tree to `uid:gid` (a release checkout, for apps that run as `run_as`).
pub(crate) fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    chown_tree_but(root, uid, gid, &[])
}

/// [`chown_tree`] but the trees in `skip`, left as they are (an artifact's hard links to
/// the store's files).
pub(crate) fn chown_tree_but(
    root: &Path,
    uid: u32,
    gid: u32,
    skip: &[std::path::PathBuf],
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // Told apart by inode, whichever path leads to them.
    let skip: Vec<(u64, u64)> = skip
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    fn walk(p: &Path, uid: u32, gid: u32, skip: &[(u64, u64)]) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        if meta.is_dir() && skip.contains(&(meta.dev(), meta.ino())) {
            return Ok(());
        }
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(p)? {
                walk(&entry?.path(), uid, gid, skip)?;
            }
        }
        Ok(())
    }
    walk(root, uid, gid, &skip)
}
