//! [`Spec::validate`]: one validator per field (or pair of fields that decide together),
//! then the assembly. Every refusal names the field.

use std::path::Path;
use std::time::Duration;

use super::fields::{invalid, opt_path};
use super::{
    is_apt_package, is_remote_url, switch, validate_env_name, validate_name,
    validate_relative_path, HealthSpec, ProxyMode, RawSpec, Resources, RestartPolicy, Spec,
    Strategy, DEFAULT_HEALTH_INTERVAL, DEFAULT_HEALTH_TIMEOUT, DEFAULT_KILL_TIMEOUT, DEFAULT_PORT,
    MAX_TEXT, RESERVED_ENV,
};
use crate::error::Error;

impl Spec {
    /// Checks every field and fills in defaults; the error names the field and the reason.
    pub(crate) fn validate(raw: RawSpec) -> Result<Spec, Error> {
        validate_name(&raw.name)?;
        let repo = repo(&raw.repo)?;
        let git_ref = git_ref(&raw.git_ref)?;
        let commit = commit(&raw.commit)?;
        let python = python(&raw.python)?;
        let command = command(&raw.command)?;
        let apt = packages(&raw)?;
        secrets(&raw)?;
        env_vars(&raw)?;
        pinned(&raw.pinned)?;
        let owner = raw.owner.trim().to_string();
        if !owner.is_empty() {
            crate::auth::parse_owner(&owner)?;
        }
        let (strategy, proxy, replicas, autoscale) = switching(&raw)?;
        let (idle_timeout, wake_timeout) = super::sleep::validate(&raw, strategy)?;
        let resources = Resources::validate(&raw.resources)?;
        let artifacts = super::artifacts::validate(&raw.artifacts, raw.allow_unpinned_artifacts)?;
        let (unhealthy_after, restart_after) =
            super::warmup::failure_counts(raw.health_unhealthy_after, raw.health_restart_after)?;
        let warmup = super::warmup::validate(&raw.warmup)?;
        let ms = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        Ok(Spec {
            repo,
            git_ref,
            commit,
            python,
            workdir: validate_relative_path("workdir", raw.workdir.trim())?,
            command,
            pip: raw.pip.iter().map(|p| p.trim().to_string()).collect(),
            apt,
            requirements: opt_path("requirements", &raw.requirements)?,
            start_script: opt_path("start_script", &raw.start_script)?,
            secrets: raw.secrets.clone(),
            port: port(raw.port)?,
            health: HealthSpec {
                path: health_path(&raw.health_path)?,
                timeout: ms(raw.health_timeout_ms, DEFAULT_HEALTH_TIMEOUT),
                interval: ms(raw.health_interval_ms, DEFAULT_HEALTH_INTERVAL),
                unhealthy_after,
                restart_after,
            },
            warmup,
            restart: restart(&raw.restart)?,
            owner,
            kill_timeout: ms(raw.kill_timeout_ms, DEFAULT_KILL_TIMEOUT),
            strategy,
            proxy,
            drain_timeout: ms(raw.drain_timeout_ms, switch::DEFAULT_DRAIN_TIMEOUT),
            hold_timeout: ms(raw.hold_timeout_ms, switch::DEFAULT_HOLD_TIMEOUT),
            replicas,
            autoscale,
            idle_timeout,
            wake_timeout,
            pinned: raw.pinned.iter().map(|p| p.trim().to_string()).collect(),
            resources,
            artifacts,
            env_vars: raw.env_vars,
            name: raw.name,
        })
    }
}

fn repo(raw: &str) -> Result<String, Error> {
    let repo = raw.trim().to_string();
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
    Ok(repo)
}

fn git_ref(raw: &str) -> Result<Option<String>, Error> {
    let git_ref = raw.trim();
    if git_ref.starts_with('-') || git_ref.contains("..") || git_ref.contains(char::is_whitespace) {
        return Err(invalid(
            "ref",
            format!("{git_ref:?} is not a valid git ref"),
        ));
    }
    Ok((!git_ref.is_empty()).then(|| git_ref.to_string()))
}

fn commit(raw: &str) -> Result<Option<String>, Error> {
    let commit = raw.trim();
    let hex = (7..=40).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit());
    if !commit.is_empty() && !hex {
        return Err(invalid(
            "commit",
            format!("{commit:?} is not a commit id (7 to 40 hex digits)"),
        ));
    }
    Ok((!commit.is_empty()).then(|| commit.to_lowercase()))
}

fn python(raw: &str) -> Result<Option<String>, Error> {
    let python = raw.trim();
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
    Ok((!python.is_empty()).then(|| python.to_string()))
}

fn command(raw: &str) -> Result<String, Error> {
    let command = raw.trim().to_string();
    if command.is_empty() {
        return Err(invalid(
            "command",
            "is required (what to run, e.g. 'python app.py')",
        ));
    }
    if command.len() > MAX_TEXT {
        return Err(invalid("command", "is too long"));
    }
    Ok(command)
}

/// `packages.pip`, `packages.apt` (returned, trimmed), `packages.conda` (refused), and how
/// many of them, env vars and secrets there may be.
fn packages(raw: &RawSpec) -> Result<Vec<String>, Error> {
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
    if raw.pip.len() > 500 || apt.len() > 500 || raw.env_vars.len() > 500 || raw.secrets.len() > 100
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
    Ok(apt)
}

fn secrets(raw: &RawSpec) -> Result<(), Error> {
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
    Ok(())
}

fn env_vars(raw: &RawSpec) -> Result<(), Error> {
    for (k, v) in &raw.env_vars {
        validate_env_name(k)?;
        if let Some(why) = super::fields::reserved_reason(k) {
            return Err(invalid(&format!("env_vars.{k}"), why));
        }
        if v.len() > MAX_TEXT || v.contains('\0') {
            return Err(invalid(
                &format!("env_vars.{k}"),
                "value is too long or has a NUL",
            ));
        }
    }
    Ok(())
}

fn port(raw: u32) -> Result<u16, Error> {
    match raw {
        0 => Ok(DEFAULT_PORT),
        p @ 1..=65535 => Ok(p as u16),
        p => Err(invalid("port", format!("{p} is out of range 1-65535"))),
    }
}

fn health_path(raw: &str) -> Result<Option<String>, Error> {
    let path = raw.trim();
    if path.is_empty() {
        return Ok(None);
    }
    if !path.starts_with('/') || path.contains(char::is_whitespace) || path.len() > 2048 {
        return Err(invalid(
            "health.path",
            format!("{path:?} must start with '/' and have no spaces"),
        ));
    }
    Ok(Some(path.to_string()))
}

fn restart(raw: &str) -> Result<RestartPolicy, Error> {
    RestartPolicy::parse(raw.trim()).ok_or_else(|| {
        invalid(
            "restart",
            format!("{raw:?} is not one of always, on-failure, never"),
        )
    })
}

fn pinned(raw: &[String]) -> Result<(), Error> {
    for p in raw {
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
    Ok(())
}

/// `strategy`, `proxy` and `replicas` (a fixed count or a range that follows the load),
/// which decide together: several replicas need the node proxy to balance them.
fn switching(raw: &RawSpec) -> Result<(Strategy, ProxyMode, u32, Option<super::Autoscale>), Error> {
    let strategy = Strategy::parse(raw.strategy.trim()).ok_or_else(|| {
        invalid(
            "strategy",
            format!("{:?} is not one of switch, recreate", raw.strategy),
        )
    })?;
    let proxy = ProxyMode::parse(raw.proxy.trim())
        .ok_or_else(|| invalid("proxy", format!("{:?} is not one of http, tcp", raw.proxy)))?;
    let (replicas, autoscale) = super::autoscale::validate(
        &super::RawAutoscale {
            replicas: raw.replicas,
            max: raw.replicas_max,
            target_in_flight: raw.target_in_flight,
            scale_up_after_ms: raw.scale_up_after_ms,
            scale_down_after_ms: raw.scale_down_after_ms,
        },
        strategy,
    )?;
    Ok((strategy, proxy, replicas, autoscale))
}
