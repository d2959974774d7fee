//! Python bytecode for a new venv, compiled after the deploy has answered. Compiling every
//! module of every installed package is far dearer than installing them (MLflow's venv:
//! ~13.5 s of compiling against ~1 s of installing with a warm uv cache), and an app imports
//! a fraction of what it installs; so uv installs without `--compile-bytecode` and the agent
//! compiles the venv in the background at the lowest CPU priority once the deploy is done.
//! The first start of a new venv's app pays for the modules it imports (FastAPI + uvicorn:
//! ~0.6 s); later starts (restarts, redeploys, replicas) find them compiled. `compileall`
//! writes each `.pyc` atomically, so an app starting meanwhile, or a deploy reusing the
//! venv, never reads half a file. A marker records that a venv is done.
//!
//! A venv about to be collected is first let go of: its compile (a process group, since
//! `compileall -j 0` forks workers) is killed and waited for, so nothing writes into the
//! directory while it is deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::COMPLETE_MARKER;

/// Written into a venv once its bytecode is compiled.
pub(crate) const COMPILED_MARKER: &str = ".deploy-agent-compiled";

/// One running compile: how to stop it, and its end.
struct Running {
    cancel: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

/// The compiles running now, by venv key: one per venv.
#[derive(Default)]
pub(super) struct Compiles {
    running: Mutex<HashMap<String, Running>>,
}

impl Compiles {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compiles venv `key` (in `dir`) in the background unless it is done, being done, or
    /// not a complete venv.
    pub(super) fn start(&self, key: &str, dir: PathBuf) {
        if !dir.join(COMPLETE_MARKER).exists() || dir.join(COMPILED_MARKER).exists() {
            return;
        }
        let mut running = self.running();
        running.retain(|_, r| !r.done.is_finished());
        if running.contains_key(key) {
            return;
        }
        let (cancel, cancelled) = oneshot::channel();
        let done = tokio::spawn(compile(dir, cancelled));
        running.insert(key.to_string(), Running { cancel, done });
    }

    /// Stops the compiles of the venvs `abandon` picks, and waits until they have ended.
    pub(super) async fn stop(&self, abandon: impl Fn(&str) -> bool) {
        let stopping: Vec<Running> = {
            let mut running = self.running();
            let keys: Vec<String> = running.keys().filter(|k| abandon(k)).cloned().collect();
            keys.iter().filter_map(|k| running.remove(k)).collect()
        };
        for r in stopping {
            let _ = r.cancel.send(());
            let _ = r.done.await;
        }
    }
}

async fn compile(venv: PathBuf, cancelled: oneshot::Receiver<()>) {
    let started = Instant::now();
    let child = tokio::process::Command::new("nice")
        .args(["-n", "19"])
        .arg(venv.join("bin/python"))
        .args(["-m", "compileall", "-q", "-j", "0"])
        .arg(venv.join("lib"))
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(venv = %venv.display(), error = %e, "cannot compile the venv's bytecode");
            return;
        }
    };
    let status = tokio::select! {
        status = child.wait() => status,
        _ = cancelled => {
            kill_group(&mut child).await;
            tracing::info!(venv = %venv.display(), "stopped compiling the bytecode of an environment being collected");
            return;
        }
    };
    match status {
        // compileall exits 1 when some file does not compile (packages ship Python 2
        // examples, templates with a .py name): what could be compiled is.
        Ok(s) if s.code().is_some_and(|c| c <= 1) => {
            mark_compiled(&venv).await;
            tracing::info!(venv = %venv.display(), took_ms = started.elapsed().as_millis() as u64, "bytecode compiled");
        }
        Ok(s) => {
            tracing::warn!(venv = %venv.display(), status = %s, "compiling the venv's bytecode failed")
        }
        Err(e) => {
            tracing::warn!(venv = %venv.display(), error = %e, "cannot compile the venv's bytecode")
        }
    }
}

/// Kills the compile and the workers it forked, and waits (up to 2 s) until none is left:
/// a worker killed in a system call finishes that call first.
async fn kill_group(child: &mut tokio::process::Child) {
    let group = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .map(nix::unistd::Pid::from_raw);
    if let Some(g) = group {
        let _ = nix::sys::signal::killpg(g, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill().await;
    let Some(g) = group else { return };
    // The workers are reaped by the agent's reaper (it is their subreaper).
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while nix::sys::signal::killpg(g, None).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn mark_compiled(venv: &Path) {
    if let Err(e) = tokio::fs::write(venv.join(COMPILED_MARKER), b"").await {
        tracing::warn!(venv = %venv.display(), error = %e, "cannot mark the venv compiled");
    }
}
