//! The tools the packages step uses, found once per agent run: `python3`, and `uv` — from
//! PATH, or installed by the agent itself into its data directory (`tools/uv`) from PyPI, so
//! that a node without uv still gets uv's speed. `python3 -m venv` + pip is the fallback,
//! or what `installer = "pip"` asks for.

use std::path::{Path, PathBuf};

pub(crate) use crate::config::InstallerMode;

/// The tool that builds environments.
#[derive(Debug, Clone)]
pub(crate) enum Installer {
    Uv { path: PathBuf, version: String },
    Pip,
}

/// What the packages step found on this node.
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    pub installer: Installer,
    /// The node's python3 that environments are made from (when the agent is root, the
    /// first on PATH that apps, running as their own users, can run).
    pub python: PathBuf,
    /// `python3 --version`, part of every environment key.
    pub python_version: String,
    /// Apps run as other users than the agent: interpreters they cannot reach (under
    /// root's home, say) are not used.
    pub for_apps: bool,
    /// How the installer was found, for the deploy output ("uv 0.9.1 from PATH").
    pub origin: String,
    /// Why uv is not used, when it is not and could have been.
    pub warning: Option<String>,
}

impl Toolchain {
    /// Finds python3 and the installer; may install uv into `tools_dir` (a few seconds,
    /// once per node).
    pub(crate) async fn detect(mode: InstallerMode, tools_dir: &Path) -> Toolchain {
        let for_apps = nix::unistd::geteuid().is_root();
        let python = if for_apps {
            which_for_apps("python3").unwrap_or_else(|| PathBuf::from("python3"))
        } else {
            PathBuf::from("python3")
        };
        let python_s = python.to_string_lossy().into_owned();
        // Two processes (each ~50 ms behind a pyenv shim): at the same time.
        let (python_version, uv) = tokio::join!(version_of(&python_s, &["--version"]), async {
            match mode {
                InstallerMode::Pip => None,
                _ => Some(Self::find_uv(tools_dir).await),
            }
        });
        let python_version = python_version.unwrap_or_default();
        let pip = |warning: Option<String>| Toolchain {
            installer: Installer::Pip,
            python: python.clone(),
            for_apps,
            python_version: python_version.clone(),
            origin: "python3 -m venv + pip".to_string(),
            warning,
        };
        match uv {
            None => pip(None),
            Some(Err(warning)) => pip(Some(warning)),
            Some(Ok((path, version, origin))) => Toolchain {
                origin: format!("{version} {origin}"),
                installer: Installer::Uv { path, version },
                python: python.clone(),
                for_apps,
                python_version,
                warning: None,
            },
        }
    }

    /// uv from PATH, or the agent's own (installed now if need be), with its version; or
    /// why there is none.
    async fn find_uv(tools_dir: &Path) -> Result<(PathBuf, String, &'static str), String> {
        let own = tools_dir.join("uv").join("bin").join("uv");
        let (path, origin) = match which("uv") {
            Some(p) => (p, "from PATH"),
            None if own.is_file() => (own, "installed by the agent"),
            None => match install_uv(tools_dir).await {
                Ok(p) => (p, "installed by the agent"),
                Err(e) => {
                    return Err(format!(
                        "uv is not on PATH and could not be installed ({e}); using venv + pip, which is much slower"
                    ))
                }
            },
        };
        match version_of(&path.to_string_lossy(), &["--version"]).await {
            Some(version) => Ok((path, version, origin)),
            None => Err(format!("{} does not run; using venv + pip", path.display())),
        }
    }

    /// Whether [`Toolchain::detect`] only looks (runs `python3 --version` and
    /// `uv --version`), with nothing to download: then the agent detects at start, off the
    /// first deploy's path.
    pub(crate) fn detects_locally(mode: InstallerMode, tools_dir: &Path) -> bool {
        mode == InstallerMode::Pip
            || which("uv").is_some()
            || tools_dir.join("uv").join("bin").join("uv").is_file()
    }

    /// Identifies the installer in environment keys.
    pub(crate) fn installer_id(&self) -> String {
        match &self.installer {
            Installer::Uv { version, .. } => version.clone(),
            Installer::Pip => "venv+pip".to_string(),
        }
    }
}

/// `python3 -m pip install --target TOOLS/uv uv`: the uv wheel carries its binary.
async fn install_uv(tools_dir: &Path) -> Result<PathBuf, String> {
    let staging = tools_dir.join(format!("uv.tmp-{}", std::process::id()));
    let target = tools_dir.join("uv");
    let _ = tokio::fs::remove_dir_all(&staging).await;
    tokio::fs::create_dir_all(tools_dir)
        .await
        .map_err(|e| format!("creating {}: {e}", tools_dir.display()))?;
    tracing::info!(dir = %target.display(), "installing uv from PyPI");
    let out = tokio::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(&staging)
        .arg("uv")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running python3 -m pip: {e}"))?;
    if !out.status.success() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("pip failed");
        return Err(last.trim().to_string());
    }
    let _ = tokio::fs::remove_dir_all(&target).await;
    tokio::fs::rename(&staging, &target)
        .await
        .map_err(|e| format!("moving uv into {}: {e}", target.display()))?;
    let bin = target.join("bin").join("uv");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("the uv package has no {}", bin.display()))
    }
}

async fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
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
pub(crate) fn which(name: &str) -> Option<PathBuf> {
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

/// Finds an executable on PATH that a user other than the agent's can run: it and every
/// directory on the way to it (links followed) let others pass. A pyenv shim under root's
/// home is skipped for the system's python3 further on.
pub(crate) fn which_for_apps(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(crate::walls::SYSTEM_PATH.split(':').map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| reachable_by_apps(p))
}

/// Whether others may run `program` (following links).
pub(crate) fn reachable_by_apps(program: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(real) = program.canonicalize() else {
        return false;
    };
    let runs = real
        .metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o001 != 0)
        .unwrap_or(false);
    runs && real
        .parent()
        .is_some_and(|dir| crate::identity::blocked_for_others(dir).is_none())
}

/// An interpreter of the Python version a deployment declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpreter {
    pub path: PathBuf,
    /// As `--version` prints it ("Python 3.11.7"): part of the environment key.
    pub version: String,
}

/// Finds Python `wanted` ("3.11", "3.11.7") on this node, never downloading one: uv's
/// discovery when uv is the installer, else `pythonX.Y` on PATH (or `python3` when it is
/// that version). The error names the versions that are here.
pub(crate) async fn find_python(
    toolchain: &Toolchain,
    wanted: &str,
) -> Result<Interpreter, String> {
    let found = match &toolchain.installer {
        Installer::Uv { path, .. } => {
            let out = uv(path, &["python", "find", wanted]).await;
            out.and_then(|s| s.lines().next().map(|l| PathBuf::from(l.trim())))
        }
        Installer::Pip => None,
    };
    let find = |name: &str| {
        if toolchain.for_apps {
            which_for_apps(name)
        } else {
            which(name)
        }
    };
    let candidates: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| !toolchain.for_apps || reachable_by_apps(p))
        .chain(find(&format!("python{wanted}")))
        .chain(find(&format!("python{}", major_minor(wanted))))
        .chain(find("python3"))
        .collect();
    for path in candidates {
        if let Some(version) = version_of(&path.to_string_lossy(), &["--version"]).await {
            if matches_version(&version, wanted) {
                return Ok(Interpreter { path, version });
            }
        }
    }
    let present = present_pythons(toolchain).await;
    let listed = if present.is_empty() {
        "none found".to_string()
    } else {
        present.join(", ")
    };
    let unreachable = if toolchain.for_apps {
        " (interpreters apps cannot run, such as under root's home, are left out: apps run as their own users)"
    } else {
        ""
    };
    Err(format!(
        "python: Python {wanted} is not on this node (present: {listed}{unreachable}); install it (e.g. apt-get install python{mm}, or `uv python install {wanted}` as the agent's user) or declare one of these",
        mm = major_minor(wanted)
    ))
}

/// "3.11.7" from "3.11.7" or "3.11" from "3.11".
fn major_minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Whether `--version` output ("Python 3.11.7") is version `wanted` ("3", "3.11", "3.11.7").
fn matches_version(output: &str, wanted: &str) -> bool {
    let Some(v) = output.trim().strip_prefix("Python ") else {
        return false;
    };
    let have: Vec<&str> = v.split('.').collect();
    wanted.split('.').enumerate().all(|(i, w)| {
        have.get(i).is_some_and(|h| {
            h.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                == w
        })
    })
}

/// The Python versions on this node, with where they are, for an error message.
async fn present_pythons(toolchain: &Toolchain) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Installer::Uv { path, .. } = &toolchain.installer {
        for line in uv(path, &["python", "list", "--only-installed"])
            .await
            .unwrap_or_default()
            .lines()
        {
            // "cpython-3.11.7-linux-x86_64-gnu    /usr/bin/python3.11"
            let mut parts = line.split_whitespace();
            let (Some(name), Some(at)) = (parts.next(), parts.next()) else {
                continue;
            };
            if toolchain.for_apps && !reachable_by_apps(Path::new(at)) {
                continue;
            }
            let version = name.split('-').nth(1).unwrap_or(name);
            let item = format!("{version} ({at})");
            if !out.iter().any(|o| o.starts_with(&format!("{version} "))) {
                out.push(item);
            }
        }
    }
    if out.is_empty() {
        if let Some(v) = version_of(&toolchain.python.to_string_lossy(), &["--version"]).await {
            out.push(format!(
                "{} (python3)",
                v.trim_start_matches("Python ").trim()
            ));
        }
    }
    out
}

/// `uv ARGS` without downloads; its stdout when it succeeded.
async fn uv(path: &Path, args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new(path)
        .args(args)
        .env("UV_PYTHON_DOWNLOADS", "never")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_by_their_given_parts() {
        assert!(matches_version("Python 3.11.7", "3.11"));
        assert!(matches_version("Python 3.11.7\n", "3.11.7"));
        assert!(matches_version("Python 3.11.7", "3"));
        assert!(!matches_version("Python 3.11.7", "3.1"));
        assert!(!matches_version("Python 3.12.0", "3.11"));
        assert!(matches_version("Python 3.13.0rc1", "3.13.0"));
        assert_eq!(major_minor("3.11.7"), "3.11");
    }
}
