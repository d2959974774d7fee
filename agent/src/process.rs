//! Child processes: each app and each script runs in its own process group, with stdin
//! closed; apps write to log files (never pipes, so they outlive the agent). Stopping is one
//! function: SIGTERM to the group, a grace period, then SIGKILL.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procstat::{self, ProcId};
use crate::tracking::{self, Tracking};

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
    /// The uid and gid to run as (when the agent is root and `run_as` is set).
    pub run_as: Option<(u32, u32)>,
}

impl Launch {
    /// `program args...` with the launch's directory and environment, in a new process group.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&self.cwd);
        cmd.env_remove("PYTHONHOME");
        if let Some(prefix) = &self.path_prefix {
            let old = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![prefix.clone()];
            paths.extend(std::env::split_paths(&old));
            if let Ok(joined) = std::env::join_paths(paths) {
                cmd.env("PATH", joined);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            // A new process group: the whole app (and what it spawns) is signalled together.
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            // std drops root's supplementary groups (setgroups) before setuid when the
            // parent is root, so the app keeps none of them.
            cmd.uid(uid).gid(gid);
        }
        cmd
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
    let mut cmd = launch.command("sh", &["-c", &launch.command]);
    cmd.stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .env(crate::tracking::MARKER_VAR, &tracking.id)
        .kill_on_drop(false);
    if let Some(dir) = &tracking.cgroup {
        let procs = crate::cgroup::procs_file(dir)?;
        // SAFETY: the closure runs in the forked child before exec; it only calls write(2)
        // on a file opened before the fork (no allocation, no lock).
        unsafe {
            cmd.pre_exec(move || crate::cgroup::join(&procs));
        }
    }
    let child = cmd.spawn().map_err(|e| match &tracking.cgroup {
        // The only step of ours that can fail in the child before exec.
        Some(dir) if e.raw_os_error() != Some(nix::libc::ENOENT) => io::Error::new(
            e.kind(),
            format!("{e} (or joining cgroup {})", dir.display()),
        ),
        _ => e,
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
    pub(crate) fn members_alive(&self) -> bool {
        crate::tracking::alive(self.id.pid, &self.tracking)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.id.pid
    }

    /// Whether it was adopted rather than started by this run.
    pub(crate) fn adopted(&self) -> bool {
        self.child.is_none()
    }

    /// The exit, if it has ended (reaping our child).
    pub(crate) fn try_wait(&mut self) -> Option<Exit> {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().map(Exit::Status),
            None => (!self.id.is_running()).then_some(Exit::Vanished),
        }
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
                if !self.id.is_running() {
                    return Exit::Vanished;
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            },
        }
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// It had already exited.
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It had to be killed with SIGKILL after the grace period.
    Killed,
    /// It let go of what the caller waited for (its port) after SIGTERM and is still
    /// exiting; the stop goes on (SIGKILL after the grace period) without the caller.
    Exiting,
}

impl Stopped {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stopped::NotRunning => "not running",
            Stopped::Terminated => "terminated",
            Stopped::Killed => "killed",
            Stopped::Exiting => "exiting",
        }
    }
}

/// Whether any process of the group is still alive. Zombies do not count: an adopted app's
/// dead members are reaped by init, or, where init does not reap, stay zombies forever.
#[cfg(test)]
pub(crate) fn group_alive(pgid: u32) -> bool {
    use nix::{errno::Errno, sys::signal::killpg, unistd::Pid};
    match killpg(Pid::from_raw(pgid as i32), None) {
        Err(Errno::ESRCH) => false,
        _ => procstat::group_has_live_member(pgid),
    }
}

/// Stops an app: SIGTERM to all its processes (group, cgroup or marked), waits up to
/// `grace` for all of them (every thread) to end, then SIGKILL. Reaps the leader when it is
/// our child, and removes the instance's cgroup. The one stop for every process the agent
/// runs, child or adopted.
pub(crate) async fn stop_group(proc_: &mut AppProcess, grace: Duration) -> Stopped {
    stop_group_releasing(proc_, grace, || false, |_| {}).await
}

/// How often a stopping group is looked at: often at first (most apps stop within a few
/// hundred ms and a deploy may be waiting), less after a second.
fn stop_poll(waited: Duration) -> Duration {
    if waited < Duration::from_secs(1) {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(20)
    }
}

/// [`stop_group`] that also tells `released`, once, as soon as the app has let go of what
/// a caller waits for (`let_go()` holds, e.g. nothing listens on its port any more) while
/// it is still exiting ([`Stopped::Exiting`]), or how it stopped if that comes first. The
/// stop itself goes on to the end (SIGKILL after `grace`).
pub(crate) async fn stop_group_releasing(
    proc_: &mut AppProcess,
    grace: Duration,
    mut let_go: impl FnMut() -> bool,
    released: impl FnOnce(Stopped),
) -> Stopped {
    let mut released = Some(released);
    /// Tells the caller (if not told yet) and returns `how`.
    fn tell(released: &mut Option<impl FnOnce(Stopped)>, how: Stopped) -> Stopped {
        if let Some(f) = released.take() {
            f(how);
        }
        how
    }
    let how = stop_all(proc_, grace, &mut let_go, &mut released).await;
    if !proc_.members_alive() {
        tracking::release(&proc_.tracking);
    }
    tell(&mut released, how)
}

async fn stop_all(
    proc_: &mut AppProcess,
    grace: Duration,
    let_go: &mut impl FnMut() -> bool,
    released: &mut Option<impl FnOnce(Stopped)>,
) -> Stopped {
    let pgid = proc_.pid();
    if pgid <= 1 {
        return Stopped::NotRunning;
    }
    // Reap first if it already exited, so a zombie leader does not look alive.
    let leader_done = proc_.try_wait().is_some();
    if leader_done && !proc_.members_alive() {
        return Stopped::NotRunning;
    }
    // An adopted leader's pid may have been reused by a stranger (which may lead a group of
    // its own): never signal its group then. (While any member of our group lives, the
    // kernel keeps its id reserved, so a pid that is gone or a zombie of ours is safe.)
    let group = !(proc_.adopted()
        && procstat::read(pgid).is_some_and(|s| s.start_time != proc_.id.start_time));
    if !tracking::signal(pgid, &proc_.tracking, Signal::SIGTERM, group) {
        proc_.try_wait();
        return Stopped::NotRunning;
    }
    let began = Instant::now();
    let deadline = began + grace;
    let mut reaped = leader_done;
    loop {
        if !reaped && proc_.try_wait().is_some() {
            reaped = true;
        }
        if reaped && !proc_.members_alive() {
            return Stopped::Terminated;
        }
        if released.is_some() && let_go() {
            if let Some(f) = released.take() {
                f(Stopped::Exiting);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let step = stop_poll(now - began).min(deadline - now);
        if reaped || proc_.adopted() {
            tokio::time::sleep(step).await;
        } else {
            // Our child: its exit wakes us at once.
            let _ = tokio::time::timeout(step, proc_.wait()).await;
        }
    }
    tracking::signal(pgid, &proc_.tracking, Signal::SIGKILL, group);
    // Processes die on SIGKILL at once; wait briefly for the kernel (and reap ours).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let leader_gone = proc_.try_wait().is_some() || proc_.adopted();
        if leader_gone && !proc_.members_alive() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Stopped::Killed
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

/// The result of a short-lived command (installer, start script).
#[derive(Debug)]
pub(crate) struct Finished {
    pub success: bool,
    /// What happened, for a failure reason: "exited with code 1", "timed out after 30s".
    pub summary: String,
    /// The last lines of its combined output.
    pub tail: Vec<String>,
}

/// How many output lines of a failed command reach the user.
pub(crate) const TAIL_LINES: usize = 30;

/// Runs a command to completion in its own process group, sending each output line to
/// `on_line` (which logs it, redacted); kills the group after `timeout`.
pub(crate) async fn run_captured(
    program: &str,
    args: &[&str],
    launch: &Launch,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> io::Result<Finished> {
    let mut cmd = launch.command(program, args);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, tx.clone()));
    }
    drop(tx);
    let mut proc_ = AppProcess::child(child);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    on_line(&line);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    let status = if timed_out {
        stop_group(&mut proc_, Duration::from_secs(2)).await;
        None
    } else {
        // Output closed; the process is exiting (or left a child holding nothing).
        match tokio::time::timeout_at(deadline, proc_.wait()).await {
            Ok(exit) => Some(exit),
            Err(_) => {
                stop_group(&mut proc_, Duration::from_secs(2)).await;
                None
            }
        }
    };
    Ok(match status {
        Some(exit) => Finished {
            success: exit.code() == Some(0),
            summary: exit.describe(),
            tail: tail.into(),
        },
        None => Finished {
            success: false,
            summary: format!("timed out after {}", humantime::format_duration(timeout)),
            tail: tail.into(),
        },
    })
}

async fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Gives a directory tree to `uid:gid` (a release checkout, for apps that run as `run_as`).
pub(crate) fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid))?;
    if root.is_dir() && !root.is_symlink() {
        for entry in std::fs::read_dir(root)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// Listens on 127.0.0.1:PORT; on SIGTERM closes the socket at once but exits only 2 s
    /// later (like uvicorn, which lets go of its port ~100 ms before it exits).
    const SLOW_EXIT: &str = r#"
import signal, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
def term(*_):
    s.close()
    time.sleep(2)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(1)
"#;

    #[tokio::test]
    async fn a_stop_answers_once_the_port_is_free_and_then_finishes() {
        let dir = std::env::temp_dir().join(format!("stop-release-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.py"), SLOW_EXIT).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let launch = Launch {
            // Not `exec`: the group's leader is sh, the listener its child.
            command: format!("python3 app.py {port}"),
            cwd: dir.clone(),
            env: vec![],
            path_prefix: None,
            run_as: None,
        };
        let mut app = spawn_app(&launch, &dir.join("app.log"), &Tracking::default()).unwrap();
        let pgid = app.pid();
        let deadline = Instant::now() + Duration::from_secs(20);
        while crate::ports::bindable(host, port) {
            assert!(Instant::now() < deadline, "the test app never listened");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = tokio::spawn(async move {
            stop_group_releasing(
                &mut app,
                Duration::from_secs(10),
                move || crate::ports::bindable(host, port),
                move |how| {
                    let _ = tx.send((how, group_alive(pgid)));
                },
            )
            .await
        });
        let (how, alive) = rx.await.unwrap();
        assert_eq!(how, Stopped::Exiting);
        assert!(alive, "answered while the app was still exiting");
        assert!(crate::ports::bindable(host, port));
        assert_eq!(stop.await.unwrap(), Stopped::Terminated);
        assert!(!group_alive(pgid));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
