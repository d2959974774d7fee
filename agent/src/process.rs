//! Child processes: each app and each script runs in its own process group, with stdin
//! closed; apps write to log files (never pipes, so they outlive the agent). Stopping is one
//! function: SIGTERM to the group, a grace period, then SIGKILL.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// What a process needs to start: the command line, its directory and its environment.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Run with `sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    /// Added to the agent's own environment.
    pub env: Vec<(String, String)>,
    /// Prepended to PATH (the Python environment's `bin`).
    pub path_prefix: Option<PathBuf>,
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
        cmd
    }
}

/// Starts an app with stdout and stderr appended to `log` (one file, in order).
pub fn spawn_app(launch: &Launch, log: &Path) -> io::Result<Child> {
    let file = OpenOptions::new().create(true).append(true).open(log)?;
    let err = file.try_clone()?;
    let mut cmd = launch.command("sh", &["-c", &launch.command]);
    cmd.stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .kill_on_drop(false);
    cmd.spawn()
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It had already exited.
    NotRunning,
    /// It exited after SIGTERM.
    Terminated,
    /// It had to be killed with SIGKILL after the grace period.
    Killed,
}

impl Stopped {
    pub fn as_str(self) -> &'static str {
        match self {
            Stopped::NotRunning => "not running",
            Stopped::Terminated => "terminated",
            Stopped::Killed => "killed",
        }
    }
}

/// Sends `sig` to the process group; `false` when the group no longer exists (ESRCH).
pub fn signal_group(pgid: u32, sig: Signal) -> bool {
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            tracing::warn!(pgid, %sig, error = %e, "could not signal process group");
            true
        }
    }
}

/// Whether any process of the group is still alive (zombies of reaped leaders excluded).
pub fn group_alive(pgid: u32) -> bool {
    matches!(
        killpg(Pid::from_raw(pgid as i32), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// Stops an app: SIGTERM to its group, waits up to `grace` for the group to empty,
/// then SIGKILL. Reaps the leader. Children the app spawned die with it.
pub async fn stop_group(child: &mut Child, pgid: u32, grace: Duration) -> Stopped {
    // Reap first if it already exited, so a zombie leader does not look alive.
    let leader_done = matches!(child.try_wait(), Ok(Some(_)));
    if leader_done && !group_alive(pgid) {
        return Stopped::NotRunning;
    }
    if !signal_group(pgid, Signal::SIGTERM) {
        let _ = child.wait().await;
        return Stopped::NotRunning;
    }
    let deadline = Instant::now() + grace;
    let mut reaped = leader_done;
    loop {
        if !reaped {
            if let Ok(Some(_)) = child.try_wait() {
                reaped = true;
            }
        }
        if reaped && !group_alive(pgid) {
            return Stopped::Terminated;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal_group(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
    // Group members other than the leader die on SIGKILL at once; wait briefly for the kernel.
    let deadline = Instant::now() + Duration::from_secs(2);
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Stopped::Killed
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}

/// A human description of an exit status: "exited with code 3" / "was killed by SIGKILL".
pub fn describe_exit(status: ExitStatus) -> String {
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
pub struct Finished {
    pub success: bool,
    /// What happened, for a failure reason: "exited with code 1", "timed out after 30s".
    pub summary: String,
    /// The last lines of its combined output.
    pub tail: Vec<String>,
}

/// How many output lines of a failed command reach the user.
pub const TAIL_LINES: usize = 30;

/// Runs a command to completion in its own process group, sending each output line to
/// `on_line` and appending it to `log`; kills the group after `timeout`.
pub async fn run_captured(
    program: &str,
    args: &[&str],
    launch: &Launch,
    log: &Path,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> io::Result<Finished> {
    let mut cmd = launch.command(program, args);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let pgid = child.id().unwrap_or(0);
    let mut logfile = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, tx.clone()));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    let _ = logfile.write_all(line.as_bytes()).await;
                    let _ = logfile.write_all(b"\n").await;
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
        stop_group(&mut child, pgid, Duration::from_secs(2)).await;
        None
    } else {
        // Output closed; the process is exiting (or left a child holding nothing).
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => Some(status?),
            Err(_) => {
                stop_group(&mut child, pgid, Duration::from_secs(2)).await;
                None
            }
        }
    };
    let _ = logfile.flush().await;
    Ok(match status {
        Some(status) => Finished {
            success: status.success(),
            summary: describe_exit(status),
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
