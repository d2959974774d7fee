//! The packages step: a Python environment with the deployment's pip packages and
//! requirements file. Environments are keyed by a hash of everything that determines them
//! and built once; a release whose key exists reuses it. `uv` is used when it is on PATH,
//! else `python3 -m venv` + pip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::events::{Events, StepError, PACKAGES};
use crate::process::{self, Launch};

/// Marks an environment whose build finished; without it the directory is a leftover.
const COMPLETE_MARKER: &str = ".deploy-agent-complete";

/// The tool that builds environments, detected once.
#[derive(Debug, Clone)]
pub enum Installer {
    Uv { path: PathBuf, version: String },
    Pip,
}

/// What the packages step found on this node.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub installer: Installer,
    /// `python3 --version`, part of the environment key.
    pub python_version: String,
}

impl Toolchain {
    pub async fn detect() -> Toolchain {
        let python_version = version_of("python3", &["--version"])
            .await
            .unwrap_or_default();
        let installer = match which("uv") {
            Some(path) => match version_of(&path.to_string_lossy(), &["--version"]).await {
                Some(version) => Installer::Uv { path, version },
                None => Installer::Pip,
            },
            None => Installer::Pip,
        };
        Toolchain {
            installer,
            python_version,
        }
    }

    fn installer_id(&self) -> String {
        match &self.installer {
            Installer::Uv { version, .. } => version.clone(),
            Installer::Pip => "venv+pip".to_string(),
        }
    }
}

async fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&text).trim().to_string())
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A ready environment.
#[derive(Debug, Clone)]
pub struct Env {
    pub dir: PathBuf,
    pub key: String,
}

/// What determines an environment; its hash is the environment's key.
pub struct EnvRequest<'a> {
    pub pip: &'a [String],
    /// The requirements file's path (relative to the workdir) and content.
    pub requirements: Option<(&'a Path, String)>,
    /// Set when the requirements refer to files in the checkout (`-e .`, `-r other.txt`):
    /// such an environment belongs to this release only.
    pub release_dir: Option<&'a Path>,
}

pub fn env_key(toolchain: &Toolchain, req: &EnvRequest<'_>) -> String {
    let mut h = Sha256::new();
    h.update(format!("installer={}\n", toolchain.installer_id()));
    h.update(format!("python={}\n", toolchain.python_version));
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
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a requirements file refers to other files (so its environment is release-local).
pub fn refers_to_files(requirements: &str) -> bool {
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
pub async fn build(
    toolchain: &Toolchain,
    envs_dir: &Path,
    key: &str,
    req: &EnvRequest<'_>,
    workdir: &Path,
    deploy_log: &Path,
    timeout: Duration,
    events: &Events,
) -> Result<(Env, bool), StepError> {
    let dir = envs_dir.join(key);
    if dir.join(COMPLETE_MARKER).exists() {
        return Ok((
            Env {
                dir,
                key: key.to_string(),
            },
            false,
        ));
    }
    if dir.exists() {
        // A build that did not finish (crash, timeout): start over.
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    tokio::fs::create_dir_all(envs_dir).await.map_err(|e| {
        StepError::new(
            PACKAGES,
            format!("cannot create {}: {e}", envs_dir.display()),
        )
    })?;
    let result = build_into(toolchain, &dir, req, workdir, deploy_log, timeout, events).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Err(e);
    }
    tokio::fs::write(dir.join(COMPLETE_MARKER), key)
        .await
        .map_err(|e| StepError::new(PACKAGES, format!("cannot write {}: {e}", dir.display())))?;
    Ok((
        Env {
            dir,
            key: key.to_string(),
        },
        true,
    ))
}

async fn build_into(
    toolchain: &Toolchain,
    dir: &Path,
    req: &EnvRequest<'_>,
    workdir: &Path,
    deploy_log: &Path,
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
    };
    let dir_s = dir.to_string_lossy().into_owned();
    let python = dir.join("bin/python").to_string_lossy().into_owned();
    let mut install_args: Vec<String> = req.pip.to_vec();
    if let Some((path, _)) = &req.requirements {
        install_args.push("-r".into());
        install_args.push(path.to_string_lossy().into_owned());
    }
    let (create, install): ((String, Vec<String>), (String, Vec<String>)) =
        match &toolchain.installer {
            Installer::Uv { path, .. } => {
                let uv = path.to_string_lossy().into_owned();
                let mut install = vec![
                    "pip".into(),
                    "install".into(),
                    "--python".into(),
                    python.clone(),
                    "--compile-bytecode".into(),
                ];
                install.extend(install_args);
                (
                    (
                        uv.clone(),
                        vec![
                            "venv".into(),
                            "--quiet".into(),
                            "--python".into(),
                            "python3".into(),
                            dir_s,
                        ],
                    ),
                    (uv, install),
                )
            }
            Installer::Pip => {
                let mut install = vec![
                    "-m".into(),
                    "pip".into(),
                    "install".into(),
                    "--progress-bar".into(),
                    "off".into(),
                ];
                install.extend(install_args);
                (
                    ("python3".into(), vec!["-m".into(), "venv".into(), dir_s]),
                    (python.clone(), install),
                )
            }
        };
    for (program, args) in [create, install] {
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let shown = format!("{} {}", short_program(&program), args.join(" "));
        events.output(PACKAGES, &format!("$ {shown}"));
        let finished =
            process::run_captured(&program, &args_ref, &launch, deploy_log, timeout, |line| {
                events.output(PACKAGES, line)
            })
            .await
            .map_err(|e| StepError::new(PACKAGES, format!("cannot run {program}: {e}")))?;
        if !finished.success {
            return Err(
                StepError::new(PACKAGES, format!("`{shown}` {}", finished.summary))
                    .with_tail(finished.tail),
            );
        }
    }
    Ok(())
}

fn short_program(program: &str) -> &str {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tc() -> Toolchain {
        Toolchain {
            installer: Installer::Pip,
            python_version: "Python 3.11.7".into(),
        }
    }

    #[test]
    fn key_depends_on_everything_that_matters() {
        let pip = vec!["six==1.16.0".to_string()];
        let base = EnvRequest {
            pip: &pip,
            requirements: None,
            release_dir: None,
        };
        let k1 = env_key(&tc(), &base);
        assert_eq!(k1, env_key(&tc(), &base));
        let pip2 = vec!["six==1.17.0".to_string()];
        assert_ne!(k1, env_key(&tc(), &EnvRequest { pip: &pip2, ..base }));
        let p = Path::new("requirements.txt");
        let with_req = EnvRequest {
            pip: &pip,
            requirements: Some((p, "flask\n".into())),
            release_dir: None,
        };
        let with_other = EnvRequest {
            pip: &pip,
            requirements: Some((p, "django\n".into())),
            release_dir: None,
        };
        assert_ne!(env_key(&tc(), &with_req), env_key(&tc(), &with_other));
        let mut other_py = tc();
        other_py.python_version = "Python 3.12.1".into();
        assert_ne!(
            k1,
            env_key(
                &other_py,
                &EnvRequest {
                    pip: &pip,
                    requirements: None,
                    release_dir: None
                }
            )
        );
    }

    #[test]
    fn local_references_are_detected() {
        assert!(refers_to_files("flask\n-e .\n"));
        assert!(refers_to_files("-r base.txt"));
        assert!(!refers_to_files("flask==3.0\n# comment\nnumpy>=1"));
    }
}
