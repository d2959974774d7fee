//! The packages step: a Python environment with the deployment's pip packages and
//! requirements file. Environments are keyed by a hash of everything that determines them
//! (installer, Python, packages, the requirements file's content) and built once; a release
//! whose key exists reuses it with no install at all. After a build the exact versions are
//! recorded (`pip freeze`); a deploy may ask for exactly those ("pinned"). Environments no
//! release uses any more are garbage-collected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::events::{Events, StepError, PACKAGES};
use super::install_cmd::{install_command, short_program};

mod commands;
use crate::process::Launch;
use commands::{commands, Cmd};

pub(crate) use crate::venvs::toolchain::Interpreter;
pub(crate) use crate::venvs::{Installer, Toolchain, COMPLETE_MARKER};

/// Holds the exact versions installed (`pip freeze`), written after a build.
const FROZEN_FILE: &str = ".deploy-agent-frozen.txt";
/// The pinned list a pinned environment was built from.
const PINNED_FILE: &str = ".deploy-agent-pinned.txt";

/// A ready environment.
#[derive(Debug, Clone)]
pub(crate) struct Venv {
    pub dir: PathBuf,
    pub key: String,
    /// The exact versions in it, one `name==version` a line.
    pub frozen: Vec<String>,
}

/// What determines an environment; its hash is the environment's key.
pub(crate) struct VenvRequest<'a> {
    pub pip: &'a [String],
    /// The requirements file's path (relative to the workdir) and content.
    pub requirements: Option<(&'a Path, String)>,
    /// Set when the requirements refer to files in the checkout (`-e .`, `-r other.txt`):
    /// such an environment belongs to this release only.
    pub release_dir: Option<&'a Path>,
    /// Exact versions to install instead of `pip` and `requirements` (a locked deploy).
    pub pinned: &'a [String],
    /// The declared Python's interpreter; `None`: the node's python3.
    pub python: Option<&'a Interpreter>,
    /// Cgroups the installer runs in (the deploy's `build_memory`); not part of the key.
    pub build_cgroups: &'a [PathBuf],
}

pub(crate) fn venv_key(toolchain: &Toolchain, req: &VenvRequest<'_>) -> String {
    let mut h = Sha256::new();
    h.update(format!("installer={}\n", toolchain.installer_id()));
    let python = req
        .python
        .map(|i| i.version.as_str())
        .unwrap_or(&toolchain.python_version);
    h.update(format!("python={python}\n"));
    for p in req.pip {
        h.update(format!("pip={p}\n"));
    }
    if let Some((path, content)) = &req.requirements {
        h.update(format!("requirements={}\n", path.display()));
        h.update(content.as_bytes());
        h.update(b"\n");
    }
    if let Some(dir) = req.release_dir {
        h.update(format!("release={}\n", dir.display()));
    }
    for p in req.pinned {
        h.update(format!("pinned={p}\n"));
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a requirements file refers to other files (so its environment is release-local).
pub(crate) fn refers_to_files(requirements: &str) -> bool {
    requirements.lines().map(str::trim).any(|l| {
        l.starts_with("-e")
            || l.starts_with("--editable")
            || l.starts_with("-r")
            || l.starts_with("-c")
            || l.starts_with("--requirement")
            || l.starts_with("--constraint")
            || l.starts_with('.')
            || l.starts_with('/')
            || l.starts_with("file:")
    })
}

/// Builds the environment `envs/<key>` unless it exists. The caller holds the key's lock.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn build(
    toolchain: &Toolchain,
    venvs_dir: &Path,
    key: &str,
    req: &VenvRequest<'_>,
    workdir: &Path,
    timeout: Duration,
    events: &Events,
) -> Result<(Venv, bool), StepError> {
    let dir = venvs_dir.join(key);
    if dir.join(COMPLETE_MARKER).exists() {
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || crate::venvs::touch(&d)).await;
        let frozen = read_frozen(&dir).await;
        return Ok((
            Venv {
                dir,
                key: key.to_string(),
                frozen,
            },
            false,
        ));
    }
    if dir.exists() {
        // A build that did not finish (crash, timeout): start over.
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    tokio::fs::create_dir_all(venvs_dir).await.map_err(|e| {
        StepError::new(
            PACKAGES,
            format!("cannot create {}: {e}", venvs_dir.display()),
        )
    })?;
    let result = build_into(toolchain, &dir, req, workdir, timeout, events).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Err(e);
    }
    let frozen = freeze(toolchain, &dir).await;
    let _ = tokio::fs::write(dir.join(FROZEN_FILE), frozen.join("\n")).await;
    tokio::fs::write(dir.join(COMPLETE_MARKER), key)
        .await
        .map_err(|e| StepError::new(PACKAGES, format!("cannot write {}: {e}", dir.display())))?;
    Ok((
        Venv {
            dir,
            key: key.to_string(),
            frozen,
        },
        true,
    ))
}

async fn build_into(
    toolchain: &Toolchain,
    dir: &Path,
    req: &VenvRequest<'_>,
    workdir: &Path,
    timeout: Duration,
    events: &Events,
) -> Result<(), StepError> {
    let launch = Launch {
        command: String::new(),
        cwd: workdir.to_path_buf(),
        env: vec![
            ("UV_PYTHON_DOWNLOADS".into(), "never".into()),
            ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
            ("PIP_NO_INPUT".into(), "1".into()),
        ],
        path_prefix: None,
        // Environments are built by the agent and only read by apps.
        walls: None,
        cgroups: req.build_cgroups.to_vec(),
    };
    let pinned_file = dir.with_extension("pinned.txt");
    if !req.pinned.is_empty() {
        // Exactly the recorded versions, and nothing they did not have.
        tokio::fs::write(&pinned_file, req.pinned.join("\n") + "\n")
            .await
            .map_err(|e| {
                StepError::new(
                    PACKAGES,
                    format!("cannot write {}: {e}", pinned_file.display()),
                )
            })?;
    }
    let interpreter = req.python.map_or(&toolchain.python, |i| &i.path);
    let cmds = commands(&toolchain.installer, interpreter, dir, req, &pinned_file);
    let launch = &launch;
    let run = |(program, args): Cmd| async move {
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown = format!("{} {}", short_program(&program), args.join(" "));
        install_command(&program, &args_ref, &shown, launch, timeout, events).await
    };
    run(cmds.create).await?;
    let installed_offline = match cmds.offline {
        Some(cmd) => match run(cmd).await {
            Ok(()) => true,
            Err(_) => {
                events.output(
                    PACKAGES,
                    "not every pinned version is in uv's cache: installing from the index",
                );
                false
            }
        },
        None => false,
    };
    if !installed_offline {
        if let Some(install) = cmds.install {
            run(install).await?;
        }
    }
    if !req.pinned.is_empty() {
        let _ = tokio::fs::rename(&pinned_file, dir.join(PINNED_FILE)).await;
    }
    Ok(())
}

/// The exact versions in an environment: `uv pip freeze` or `pip freeze`.
async fn freeze(toolchain: &Toolchain, dir: &Path) -> Vec<String> {
    let python = dir.join("bin/python");
    let mut cmd = match &toolchain.installer {
        Installer::Uv { path, .. } => {
            let mut c = tokio::process::Command::new(path);
            c.args(["pip", "freeze", "--python"]).arg(&python);
            c
        }
        Installer::Pip => {
            let mut c = tokio::process::Command::new(&python);
            c.args(["-m", "pip", "freeze", "--disable-pip-version-check"]);
            c
        }
    };
    match cmd.stdin(std::process::Stdio::null()).output().await {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        Ok(out) => {
            tracing::warn!(env = %dir.display(), stderr = %String::from_utf8_lossy(&out.stderr), "pip freeze failed");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(env = %dir.display(), error = %e, "pip freeze failed");
            Vec::new()
        }
    }
}

pub(crate) async fn read_frozen(dir: &Path) -> Vec<String> {
    tokio::fs::read_to_string(dir.join(FROZEN_FILE))
        .await
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tc() -> Toolchain {
        Toolchain {
            installer: Installer::Pip,
            python: "python3".into(),
            for_apps: false,
            python_version: "Python 3.11.7".into(),
            origin: "python3 -m venv + pip".into(),
            warning: None,
        }
    }

    /// A request for `pip` and `requirements` (also used by `commands`' tests).
    pub(super) fn req<'a>(
        pip: &'a [String],
        requirements: Option<(&'a Path, String)>,
    ) -> VenvRequest<'a> {
        VenvRequest {
            build_cgroups: &[],
            python: None,
            pip,
            requirements,
            release_dir: None,
            pinned: &[],
        }
    }

    #[test]
    fn key_depends_on_everything_that_matters() {
        let pip = vec!["six==1.16.0".to_string()];
        let k1 = venv_key(&tc(), &req(&pip, None));
        assert_eq!(k1, venv_key(&tc(), &req(&pip, None)));
        let pip2 = vec!["six==1.17.0".to_string()];
        assert_ne!(k1, venv_key(&tc(), &req(&pip2, None)));
        let p = Path::new("requirements.txt");
        let a = venv_key(&tc(), &req(&pip, Some((p, "flask\n".into()))));
        let b = venv_key(&tc(), &req(&pip, Some((p, "django\n".into()))));
        assert_ne!(a, b);
        let mut other_py = tc();
        other_py.python_version = "Python 3.12.1".into();
        assert_ne!(k1, venv_key(&other_py, &req(&pip, None)));
        let pinned = vec!["six==1.16.0".to_string()];
        let locked = VenvRequest {
            build_cgroups: &[],
            pinned: &pinned,
            ..req(&[], None)
        };
        assert_ne!(k1, venv_key(&tc(), &locked), "a pinned env is its own");
    }

    #[test]
    fn local_references_are_detected() {
        assert!(refers_to_files("flask\n-e .\n"));
        assert!(refers_to_files("-r base.txt"));
        assert!(!refers_to_files("flask==3.0\n# comment\nnumpy>=1"));
    }
}
