//! Short-lived commands (installers, start scripts): run to completion in their own
//! process group, output captured line by line, killed after a timeout.

use std::collections::VecDeque;
use std::io;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::{stop_group, AppProcess, Launch};

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
    let mut cmd = launch.command(program, args)?;
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
