//! Python bytecode for a new venv, compiled after the deploy has answered. Compiling every
//! module of every installed package is far dearer than installing them (MLflow's venv:
//! ~13.5 s of compiling against ~1 s of installing with a warm uv cache), and an app imports
//! a fraction of what it installs; so uv installs without `--compile-bytecode` and the agent
//! compiles the venv in the background at the lowest CPU priority once the deploy is done.
//! The first start of a new venv's app pays for the modules it imports (FastAPI + uvicorn:
//! ~0.6 s); later starts (restarts, redeploys, replicas) find them compiled. `compileall`
//! writes each `.pyc` atomically, so an app starting meanwhile, or a deploy reusing the
//! venv, never reads half a file. A marker records that a venv is done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::venvs::COMPLETE_MARKER;

/// Written into a venv once its bytecode is compiled.
pub(crate) const COMPILED_MARKER: &str = ".deploy-agent-compiled";

/// Venvs being compiled now: one compile per venv.
static RUNNING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Compiles `venv` in the background unless it is done, being done, or not a complete venv.
pub(crate) fn compile_later(venv: PathBuf) {
    if !venv.join(COMPLETE_MARKER).exists() || venv.join(COMPILED_MARKER).exists() {
        return;
    }
    if !RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(venv.clone())
    {
        return;
    }
    tokio::spawn(async move {
        compile(&venv).await;
        RUNNING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&venv);
    });
}

async fn compile(venv: &Path) {
    let started = Instant::now();
    let status = tokio::process::Command::new("nice")
        .args(["-n", "19"])
        .arg(venv.join("bin/python"))
        .args(["-m", "compileall", "-q", "-j", "0"])
        .arg(venv.join("lib"))
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    match status {
        // compileall exits 1 when some file does not compile (packages ship Python 2
        // examples, templates with a .py name): what could be compiled is.
        Ok(s) if s.code().is_some_and(|c| c <= 1) => {
            if let Err(e) = tokio::fs::write(venv.join(COMPILED_MARKER), b"").await {
                tracing::warn!(venv = %venv.display(), error = %e, "cannot mark the venv compiled");
            }
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
