//! The project: the directory holding declarations and `.deployctl.yaml` (found in the
//! current directory or its nearest parent), and its configuration.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

/// How long an agent may take to answer, unless `--timeout` / `DEPLOYCTL_TIMEOUT` says.
pub(crate) const DEFAULT_AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) const CONFIG_FILE: &str = ".deployctl.yaml";
pub(crate) const DEFAULT_STATE_URI: &str = ".deployctl/state.json";
pub(crate) const DEFAULT_ENV: &str = "local";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectConfig {
    #[serde(default)]
    pub core: CoreConfig,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CoreConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_env: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// The S3 endpoint of an `s3://` uri (an S3-compatible store); else `AWS_ENDPOINT_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    /// How long an agent may take to answer (`--timeout`): every command that asks agents
    /// gets it through the env's `Target`.
    pub agent_timeout: std::time::Duration,
}

impl Project {
    /// `--project DIR`, else the nearest directory upwards with `.deployctl.yaml`, else cwd.
    pub(crate) fn find(explicit: Option<&Path>) -> anyhow::Result<Project> {
        let root = match explicit {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(bad_input(format!(
                        "--project: {} is not a directory",
                        dir.display()
                    )));
                }
                dir.to_path_buf()
            }
            None => {
                let cwd = std::env::current_dir().context("reading the current directory")?;
                cwd.ancestors()
                    .find(|d| d.join(CONFIG_FILE).is_file())
                    .map(Path::to_path_buf)
                    .unwrap_or(cwd)
            }
        };
        let root = std::path::absolute(&root).unwrap_or(root);
        let path = root.join(CONFIG_FILE);
        let config = match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => ProjectConfig::default(),
            Ok(text) => serde_norway::from_str(&text)
                .map_err(|e| bad_input(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProjectConfig::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Project {
            root,
            config,
            agent_timeout: DEFAULT_AGENT_TIMEOUT,
        })
    }

    pub(crate) fn default_env(&self) -> String {
        self.config
            .core
            .default_env
            .clone()
            .unwrap_or_else(|| DEFAULT_ENV.to_string())
    }

    /// The state location, with a relative path taken from the project root.
    pub(crate) fn state_uri(&self) -> String {
        self.config
            .core
            .state
            .as_ref()
            .map(|s| s.uri.clone())
            .filter(|uri| !uri.is_empty())
            .unwrap_or_else(|| DEFAULT_STATE_URI.to_string())
    }

    /// `core.state.endpoint`: the S3 endpoint of an `s3://` state (`None`: `AWS_ENDPOINT_URL`
    /// or AWS S3 itself).
    pub(crate) fn state_endpoint(&self) -> Option<String> {
        self.config
            .core
            .state
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .filter(|e| !e.is_empty())
    }

    pub(crate) fn deployment_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.deploy.yaml"))
    }

    /// The envs declared in the project root (`NAME.env.yaml`).
    pub(crate) fn declared_envs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return vec![];
        };
        entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".env.yaml"))
                    .filter(|n| crate::decl::validate_name("env", n).is_ok())
                    .map(str::to_string)
            })
            .collect()
    }

    pub(crate) fn env_file(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.env.yaml"))
    }
}
