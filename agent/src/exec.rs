//! One-off commands (`deployctl exec`): run in the current release's checkout and workdir
//! with everything its app gets (venv, env vars, secrets, user), in a process group of its
//! own; output streamed back (secrets redacted, as in logs), standard input forwarded when
//! asked for, and the group killed when the caller goes away.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::process::{stop_group, AppProcess};
use crate::secrets::Redactor;
use crate::supervisor::Supervisor;

/// What a running command reports, in order: where it runs, its output, how it ended.
#[derive(Debug)]
pub(crate) enum ExecEvent {
    Started {
        release: u32,
        cwd: String,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Its exit code, or the signal that ended it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Exit code of a program that could not be started (as a shell says "not found").
const NOT_STARTED: i32 = 127;

/// Starts `argv` for deployment `name`; `stdin` (when given) is its standard input.
pub(crate) async fn start(
    sup: Arc<Supervisor>,
    name: &str,
    argv: Vec<String>,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
) -> Result<mpsc::Receiver<ExecEvent>> {
    let d = sup
        .registry()
        .get(name)
        .ok_or_else(|| Error::NotFound(name.to_string()))?;
    let release = d.current().ok_or_else(|| {
        Error::Conflict(format!(
            "{name} has no release on this agent (its deploys failed here): there is nothing to run a command in"
        ))
    })?;
    let Some(program) = argv.first().cloned() else {
        return Err(Error::InvalidInput {
            field: "argv".into(),
            reason: "give a command to run".into(),
        });
    };
    let dir = sup.layout().release(name, release.number);
    if tokio::fs::metadata(&dir).await.is_err() {
        return Err(Error::Conflict(format!(
            "release {}'s directory is gone on this agent; deploy {name} again",
            release.number
        )));
    }
    let launch = crate::launch::launch(&sup, &d, &release, &dir, d.private_port()).await;
    let redactor = sup.redactor(name).await;
    let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let mut cmd = launch
        .command(&program, &args)
        .map_err(|e| Error::Internal(format!("preparing {program}: {e}")))?;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let (tx, rx) = mpsc::channel(64);
    let started = ExecEvent::Started {
        release: release.number,
        cwd: launch.cwd.to_string_lossy().into_owned(),
    };
    let _ = tx.send(started).await;
    tracing::info!(deployment = %name, release = release.number, program = %program, "exec");
    match cmd.spawn() {
        Ok(child) => {
            tokio::spawn(supervise(child, stdin, redactor, tx));
        }
        Err(e) => {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{program}: not found (in the release's environment, then the agent's PATH)\n"
                )
            } else {
                format!("{program}: cannot start: {e}\n")
            };
            let _ = tx.send(ExecEvent::Stderr(why.into_bytes())).await;
            let _ = tx
                .send(ExecEvent::Exited {
                    code: Some(NOT_STARTED),
                    signal: None,
                })
                .await;
        }
    }
    Ok(rx)
}

/// Forwards input and output until the command ends (or the caller goes away: then its
/// process group is stopped), then reports how it ended.
async fn supervise(
    mut child: tokio::process::Child,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
    redactor: Redactor,
    tx: mpsc::Sender<ExecEvent>,
) {
    if let (Some(mut input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            while let Some(data) = input.recv().await {
                if pipe.write_all(&data).await.is_err() {
                    return;
                }
                let _ = pipe.flush().await;
            }
            // Dropping the pipe closes the command's standard input.
        });
    }
    let out = child
        .stdout
        .take()
        .map(|s| pump(s, tx.clone(), redactor.clone(), ExecEvent::Stdout));
    let err = child
        .stderr
        .take()
        .map(|s| pump(s, tx.clone(), redactor.clone(), ExecEvent::Stderr));
    let mut proc_ = AppProcess::child(child);
    let outputs = async {
        if let Some(o) = out {
            o.await;
        }
        if let Some(e) = err {
            e.await;
        }
    };
    let ended = tokio::select! {
        _ = outputs => Some(proc_.wait().await),
        _ = tx.closed() => None,
    };
    let Some(exit) = ended else {
        // The caller went away: the command and what it started stop too.
        stop_group(&mut proc_, Duration::from_secs(2)).await;
        return;
    };
    let (code, signal) = exit.code_and_signal();
    let _ = tx.send(ExecEvent::Exited { code, signal }).await;
}

/// Sends what `stream` writes, as it comes, redacted.
async fn pump(
    mut stream: impl AsyncRead + Unpin,
    tx: mpsc::Sender<ExecEvent>,
    redactor: Redactor,
    wrap: fn(Vec<u8>) -> ExecEvent,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send(wrap(redactor.bytes(buf[..n].to_vec())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
