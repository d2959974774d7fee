//! The domain's view of a deployment: what to run, validated on the agent.
//!
//! The tonic adapter converts a proto `DeploymentSpec` into a [`Spec`] with
//! [`Spec::validate`]; nothing past this point sees unvalidated input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

mod fields;
mod millis;
mod resources;
mod restart;
mod switch;

pub(crate) use resources::{RawResources, Resources};
pub(crate) use restart::RestartPolicy;
pub(crate) use switch::{ProxyMode, Strategy};

use fields::{invalid, opt_path};
pub(crate) use fields::{
    is_apt_package, is_remote_url, validate_env_name, validate_name, validate_relative_path,
    RESERVED_ENV,
};

/// Longest accepted deployment name (it becomes a directory name).
pub(crate) const MAX_NAME: usize = 63;
/// Longest accepted command, repo URL, path or env value.
pub(crate) const MAX_TEXT: usize = 16 * 1024;

/// How the app's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthSpec {
    /// HTTP GET path expecting 2xx/3xx; `None` means a TCP connect.
    pub path: Option<String>,
    /// How long a new release may take to become healthy.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Period of checks once healthy.
    #[serde(with = "millis")]
    pub interval: Duration,
}

/// A validated deployment: everything the agent needs to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub name: String,
    pub repo: String,
    /// Branch, tag or commit; `None` means the remote HEAD.
    pub git_ref: Option<String>,
    /// Exactly this commit (then `git_ref` is only its name): a rollback, `env set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Relative to the repository root, never leaving it.
    pub workdir: PathBuf,
    pub command: String,
    pub pip: Vec<String>,
    /// Debian packages for the node (only where the agent's config allows apt).
    #[serde(default)]
    pub apt: Vec<String>,
    /// Relative to the workdir.
    pub requirements: Option<PathBuf>,
    /// Relative to the workdir.
    pub start_script: Option<PathBuf>,
    pub env_vars: BTreeMap<String, String>,
    /// Names of the owner's secrets the app gets as environment variables.
    #[serde(default)]
    pub secrets: Vec<String>,
    pub port: u16,
    pub health: HealthSpec,
    pub restart: RestartPolicy,
    pub owner: String,
    #[serde(with = "millis")]
    pub kill_timeout: Duration,
    /// Exact versions to install instead of `pip` and `requirements` (a locked deploy).
    #[serde(default)]
    pub pinned: Vec<String>,
    /// How a new release replaces the running one.
    #[serde(default = "Strategy::of_older_records")]
    pub strategy: Strategy,
    /// What the node proxy speaks on `port` (with [`Strategy::Switch`]).
    #[serde(default)]
    pub proxy: ProxyMode,
    #[serde(with = "millis", default = "switch::default_drain")]
    pub drain_timeout: Duration,
    #[serde(with = "millis", default = "switch::default_hold")]
    pub hold_timeout: Duration,
    /// Processes of the release behind the node proxy (1 without it).
    #[serde(default = "one")]
    pub replicas: u32,
    /// The Python version its environment is made with (`3.11`); `None`: python3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Limits for every process of the app and for the build (none in older records).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

fn one() -> u32 {
    1
}

/// The most replicas a deployment may ask for on one node.
pub(crate) const MAX_REPLICAS: u32 = 64;

/// Defaults the agent applies to fields a request leaves empty.
pub(crate) const DEFAULT_PORT: u16 = 8000;
pub(crate) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The raw request fields, before validation (mirrors the proto message).
#[derive(Debug, Default, Clone)]
pub(crate) struct RawSpec {
    pub name: String,
    pub repo: String,
    pub git_ref: String,
    pub workdir: String,
    pub command: String,
    pub pip: Vec<String>,
    pub apt: Vec<String>,
    pub conda: Vec<String>,
    pub requirements: String,
    pub start_script: String,
    pub env_vars: BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub port: u32,
    pub health_path: String,
    pub health_timeout_ms: u64,
    pub health_interval_ms: u64,
    pub restart: String,
    pub owner: String,
    pub kill_timeout_ms: u64,
    pub strategy: String,
    pub drain_timeout_ms: u64,
    pub hold_timeout_ms: u64,
    pub proxy: String,
    pub replicas: u32,
    pub pinned: Vec<String>,
    pub commit: String,
    pub python: String,
    pub resources: RawResources,
}

impl Spec {
    /// Checks every field and fills in defaults; the error names the field and the reason.
    pub(crate) fn validate(raw: RawSpec) -> Result<Spec, Error> {
        validate_name(&raw.name)?;
        let repo = raw.repo.trim().to_string();
        if repo.is_empty() {
            return Err(invalid("repo", "is required"));
        }
        if repo.len() > MAX_TEXT {
            return Err(invalid("repo", "is too long"));
        }
        if !is_remote_url(&repo) && !Path::new(&repo).is_absolute() {
            return Err(invalid(
                "repo",
                format!("{repo:?} is neither a URL (https://, ssh://, git://, file://, user@host:path) nor an absolute path"),
            ));
        }
        let git_ref = raw.git_ref.trim();
        if git_ref.starts_with('-')
            || git_ref.contains("..")
            || git_ref.contains(char::is_whitespace)
        {
            return Err(invalid(
                "ref",
                format!("{git_ref:?} is not a valid git ref"),
            ));
        }
        let commit = raw.commit.trim();
        let hex = (7..=40).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit());
        if !commit.is_empty() && !hex {
            return Err(invalid(
                "commit",
                format!("{commit:?} is not a commit id (7 to 40 hex digits)"),
            ));
        }
        let python = raw.python.trim();
        let version_like = python.split('.').count() <= 3
            && python
                .split('.')
                .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()));
        if !python.is_empty() && !version_like {
            return Err(invalid(
                "python",
                format!("{python:?} is not a Python version; write e.g. 3.11 or 3.12.4"),
            ));
        }
        let command = raw.command.trim().to_string();
        if command.is_empty() {
            return Err(invalid(
                "command",
                "is required (what to run, e.g. 'python app.py')",
            ));
        }
        if command.len() > MAX_TEXT {
            return Err(invalid("command", "is too long"));
        }
        let apt: Vec<String> = raw.apt.iter().map(|p| p.trim().to_string()).collect();
        if let Some(bad) = apt.iter().find(|p| !is_apt_package(p)) {
            return Err(invalid(
                "packages.apt",
                format!("{bad:?} is not a Debian package name (like libpq-dev or figlet=2.2.5-3)"),
            ));
        }
        if !raw.conda.is_empty() {
            return Err(invalid(
                "packages.conda",
                "conda/micromamba is not available on this agent; use pip packages",
            ));
        }
        for name in &raw.secrets {
            validate_env_name(name).map_err(|_| {
                invalid(
                    &format!("secrets.{name}"),
                    "is not a valid variable name (letters, digits and '_')",
                )
            })?;
            if RESERVED_ENV.contains(&name.as_str()) || raw.env_vars.contains_key(name) {
                return Err(invalid(
                    &format!("secrets.{name}"),
                    "is also set by env_vars or by the agent",
                ));
            }
        }
        if raw.pip.len() > 500
            || apt.len() > 500
            || raw.env_vars.len() > 500
            || raw.secrets.len() > 100
        {
            return Err(invalid(
                "packages",
                "too many packages, env vars or secrets",
            ));
        }
        for p in &raw.pip {
            if p.trim().is_empty() || p.starts_with('-') || p.len() > 1024 {
                return Err(invalid(
                    "packages.pip",
                    format!("{p:?} is not a package requirement"),
                ));
            }
        }
        for (k, v) in &raw.env_vars {
            validate_env_name(k)?;
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(invalid(
                    &format!("env_vars.{k}"),
                    "is set by the agent itself and cannot be overridden",
                ));
            }
            if v.len() > MAX_TEXT || v.contains('\0') {
                return Err(invalid(
                    &format!("env_vars.{k}"),
                    "value is too long or has a NUL",
                ));
            }
        }
        let port = match raw.port {
            0 => DEFAULT_PORT,
            p @ 1..=65535 => p as u16,
            p => return Err(invalid("port", format!("{p} is out of range 1-65535"))),
        };
        let path = raw.health_path.trim();
        let health_path = if path.is_empty() {
            None
        } else if !path.starts_with('/') || path.contains(char::is_whitespace) || path.len() > 2048
        {
            return Err(invalid(
                "health.path",
                format!("{path:?} must start with '/' and have no spaces"),
            ));
        } else {
            Some(path.to_string())
        };
        let restart = RestartPolicy::parse(raw.restart.trim()).ok_or_else(|| {
            invalid(
                "restart",
                format!("{:?} is not one of always, on-failure, never", raw.restart),
            )
        })?;
        let owner = raw.owner.trim().to_string();
        if !owner.is_empty() {
            crate::auth::parse_owner(&owner)?;
        }
        for p in &raw.pinned {
            let p = p.trim();
            if p.is_empty()
                || p.starts_with('-')
                || p.len() > 1024
                || p.contains(char::is_whitespace) && !p.contains(" @ ")
            {
                return Err(invalid(
                    "pinned",
                    format!("{p:?} is not a pinned requirement (name==version)"),
                ));
            }
        }
        let strategy = Strategy::parse(raw.strategy.trim()).ok_or_else(|| {
            invalid(
                "strategy",
                format!("{:?} is not one of switch, recreate", raw.strategy),
            )
        })?;
        let proxy = ProxyMode::parse(raw.proxy.trim())
            .ok_or_else(|| invalid("proxy", format!("{:?} is not one of http, tcp", raw.proxy)))?;
        let replicas = raw.replicas.max(1);
        if replicas > MAX_REPLICAS {
            return Err(invalid(
                "replicas",
                format!("{replicas} is more than {MAX_REPLICAS}"),
            ));
        }
        if replicas > 1 && strategy == Strategy::Recreate {
            return Err(invalid(
                "replicas",
                format!("{replicas} replicas need strategy switch (the node proxy balances them); with strategy recreate the app binds the port itself, so one process can"),
            ));
        }
        let resources = Resources::validate(&raw.resources)?;
        let ms = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        Ok(Spec {
            name: raw.name,
            repo,
            git_ref: (!git_ref.is_empty()).then(|| git_ref.to_string()),
            commit: (!commit.is_empty()).then(|| commit.to_lowercase()),
            python: (!python.is_empty()).then(|| python.to_string()),
            workdir: validate_relative_path("workdir", raw.workdir.trim())?,
            command,
            pip: raw.pip.iter().map(|p| p.trim().to_string()).collect(),
            apt,
            requirements: opt_path("requirements", &raw.requirements)?,
            start_script: opt_path("start_script", &raw.start_script)?,
            env_vars: raw.env_vars,
            secrets: raw.secrets.clone(),
            port,
            health: HealthSpec {
                path: health_path,
                timeout: ms(raw.health_timeout_ms, DEFAULT_HEALTH_TIMEOUT),
                interval: ms(raw.health_interval_ms, DEFAULT_HEALTH_INTERVAL),
            },
            restart,
            owner,
            kill_timeout: ms(raw.kill_timeout_ms, DEFAULT_KILL_TIMEOUT),
            strategy,
            proxy,
            drain_timeout: ms(raw.drain_timeout_ms, switch::DEFAULT_DRAIN_TIMEOUT),
            hold_timeout: ms(raw.hold_timeout_ms, switch::DEFAULT_HOLD_TIMEOUT),
            replicas,
            pinned: raw.pinned.iter().map(|p| p.trim().to_string()).collect(),
            resources,
        })
    }

    /// Whether the packages step has anything to install.
    pub(crate) fn has_packages(&self) -> bool {
        !self.pip.is_empty()
            || self.requirements.is_some()
            || !self.pinned.is_empty()
            || self.python.is_some()
    }
}

#[cfg(test)]
mod tests;
