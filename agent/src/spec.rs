//! The domain's view of a deployment: what to run, validated on the agent.
//!
//! The tonic adapter converts a proto `DeploymentSpec` into a [`Spec`] with
//! [`Spec::validate`]; nothing past this point sees unvalidated input.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest accepted deployment name (it becomes a directory name).
const MAX_NAME: usize = 63;
/// Longest accepted command, repo URL, path or env value.
const MAX_TEXT: usize = 16 * 1024;

/// What to do when the app exits or stays unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "on-failure" => Some(Self::OnFailure),
            "always" => Some(Self::Always),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }

    /// Whether an exit with this code (0 = clean) should be followed by a restart.
    pub fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

/// How the app's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSpec {
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
pub struct Spec {
    pub name: String,
    pub repo: String,
    /// Branch, tag or commit; `None` means the remote HEAD.
    pub git_ref: Option<String>,
    /// Relative to the repository root, never leaving it.
    pub workdir: PathBuf,
    pub command: String,
    pub pip: Vec<String>,
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
}

/// Defaults the agent applies to fields a request leaves empty.
pub const DEFAULT_PORT: u16 = 8000;
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A deployment name: it names directories, log files and URLs, so it is kept plain.
pub fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    if name.len() > MAX_NAME {
        return Err(invalid(
            "name",
            format!("is longer than {MAX_NAME} characters"),
        ));
    }
    let first = name.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return Err(invalid(
            "name",
            format!("{name:?} must start with a letter or digit"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(
            "name",
            format!("{name:?} contains {bad:?}; use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// A path inside the checkout: relative, with no `..` and no root.
pub fn validate_relative_path(field: &str, value: &str) -> Result<PathBuf, Error> {
    if value.len() > MAX_TEXT {
        return Err(invalid(field, "is too long"));
    }
    if value.contains('\0') {
        return Err(invalid(field, "contains a NUL byte"));
    }
    let path = Path::new(value);
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(invalid(
                    field,
                    format!("{value:?} leaves the checkout ('..' is not allowed)"),
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(invalid(
                    field,
                    format!("{value:?} is absolute; give a path relative to the repository"),
                ))
            }
        }
    }
    Ok(clean)
}

/// An environment variable name as POSIX shells accept it.
pub fn validate_env_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.as_bytes()[0].is_ascii_digit()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            &format!("env_vars.{name}"),
            "is not a valid variable name (letters, digits and '_', not starting with a digit)",
        ))
    }
}

/// Variables the agent sets itself; a user value would be silently lost, so it is refused.
pub const RESERVED_ENV: &[&str] = &[
    "PORT",
    "HOST",
    "DEPLOYMENT_NAME",
    "DEPLOYMENT_RELEASE",
    "GIT_COMMIT",
    "VIRTUAL_ENV",
];

/// The raw request fields, before validation (mirrors the proto message).
#[derive(Debug, Default, Clone)]
pub struct RawSpec {
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
    pub pinned: Vec<String>,
}

impl Spec {
    /// Checks every field and fills in defaults; the error names the field and the reason.
    pub fn validate(raw: RawSpec) -> Result<Spec, Error> {
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
        if !raw.apt.is_empty() {
            return Err(invalid(
                "packages.apt",
                "this agent may not install apt packages; install them on the node or use pip",
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
        if raw.pip.len() > 500 || raw.env_vars.len() > 500 || raw.secrets.len() > 100 {
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
        if !(owner.is_empty() || owner.starts_with("user:") || owner.starts_with("group:")) {
            return Err(invalid(
                "owner",
                format!("{owner:?} must be user:NAME or group:NAME"),
            ));
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
        let ms = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        Ok(Spec {
            name: raw.name,
            repo,
            git_ref: (!git_ref.is_empty()).then(|| git_ref.to_string()),
            workdir: validate_relative_path("workdir", raw.workdir.trim())?,
            command,
            pip: raw.pip.iter().map(|p| p.trim().to_string()).collect(),
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
            pinned: raw.pinned.iter().map(|p| p.trim().to_string()).collect(),
        })
    }

    /// Whether the packages step has anything to install.
    pub fn has_packages(&self) -> bool {
        !self.pip.is_empty() || self.requirements.is_some() || !self.pinned.is_empty()
    }
}

fn opt_path(field: &str, value: &str) -> Result<Option<PathBuf>, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let p = validate_relative_path(field, value)?;
    if p.as_os_str().is_empty() {
        return Err(invalid(field, format!("{value:?} names no file")));
    }
    Ok(Some(p))
}

/// URLs git understands that are not local paths.
pub fn is_remote_url(repo: &str) -> bool {
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    if schemes.iter().any(|s| repo.starts_with(s)) {
        return true;
    }
    // scp-like `user@host:path`
    match (repo.find('@'), repo.find(':')) {
        (Some(at), Some(colon)) => at < colon && !repo.starts_with('/'),
        _ => false,
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawSpec {
        RawSpec {
            name: "iris".into(),
            repo: "/tmp/repo".into(),
            command: "python app.py".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_applied() {
        let s = Spec::validate(raw()).unwrap();
        assert_eq!(s.port, 8000);
        assert_eq!(s.restart, RestartPolicy::OnFailure);
        assert_eq!(s.health.timeout, DEFAULT_HEALTH_TIMEOUT);
        assert_eq!(s.git_ref, None);
        assert!(!s.has_packages());
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "../x", "a b", "-x", "x/y", &"a".repeat(64)] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("name:"), "{bad:?}: {err}");
        }
        validate_name("iris-v2.1_a").unwrap();
    }

    #[test]
    fn workdir_may_not_escape() {
        for bad in ["../../etc", "a/../../b", "/etc", "x/.."] {
            let mut r = raw();
            r.workdir = bad.into();
            let err = Spec::validate(r).unwrap_err().to_string();
            assert!(err.starts_with("workdir:"), "{bad}: {err}");
        }
        let mut r = raw();
        r.workdir = "./services/api/".into();
        assert_eq!(
            Spec::validate(r).unwrap().workdir,
            PathBuf::from("services/api")
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        type Mutate = fn(&mut RawSpec);
        let cases: Vec<(Mutate, &str)> = vec![
            (|r| r.port = 70000, "port:"),
            (|r| r.command = " ".into(), "command:"),
            (|r| r.repo = "relative/path".into(), "repo:"),
            (|r| r.restart = "sometimes".into(), "restart:"),
            (|r| r.health_path = "health".into(), "health.path:"),
            (
                |r| {
                    r.env_vars.insert("1X".into(), "v".into());
                },
                "env_vars.1X:",
            ),
            (
                |r| {
                    r.env_vars.insert("PORT".into(), "1".into());
                },
                "env_vars.PORT:",
            ),
            (|r| r.apt = vec!["curl".into()], "packages.apt:"),
            (|r| r.requirements = "../req.txt".into(), "requirements:"),
            (|r| r.owner = "bob".into(), "owner:"),
        ];
        for (mutate, prefix) in cases {
            let mut r = raw();
            mutate(&mut r);
            let err = Spec::validate(r).unwrap_err().to_string();
            assert!(err.starts_with(prefix), "expected {prefix}, got {err}");
        }
    }

    #[test]
    fn remote_urls() {
        assert!(is_remote_url("git@github.com:org/repo.git"));
        assert!(is_remote_url("file:///tmp/x"));
        assert!(!is_remote_url("/tmp/x"));
        assert!(!is_remote_url("repo"));
    }

    proptest::proptest! {
        /// Whatever a request carries, validation never panics, and what it accepts stays
        /// inside the checkout and names a plain deployment.
        #[test]
        fn validation_never_panics_or_escapes(
            name in ".{0,70}",
            workdir in "(\\.\\./|/|[a-z.]{1,4}/){0,6}[a-z.]{0,5}",
            requirements in ".{0,40}",
            env in "[A-Za-z0-9_=. -]{0,12}",
            port in 0u32..100_000,
        ) {
            let raw = RawSpec {
                name,
                repo: "/srv/repo".into(),
                command: "python app.py".into(),
                workdir,
                requirements,
                env_vars: [(env, "v".to_string())].into(),
                port,
                ..Default::default()
            };
            if let Ok(s) = Spec::validate(raw) {
                let inside = |p: &Path| p.components().all(|c| matches!(c, Component::Normal(_)));
                proptest::prop_assert!(inside(&s.workdir));
                proptest::prop_assert!(s.requirements.as_deref().is_none_or(inside));
                proptest::prop_assert!(validate_name(&s.name).is_ok());
                proptest::prop_assert!(!s.name.contains('/') && !s.name.starts_with('.'));
                proptest::prop_assert!(s.port >= 1);
                for k in s.env_vars.keys() {
                    proptest::prop_assert!(validate_env_name(k).is_ok());
                }
            }
        }
    }

    #[test]
    fn restart_policy() {
        assert!(RestartPolicy::OnFailure.restarts_after(1));
        assert!(!RestartPolicy::OnFailure.restarts_after(0));
        assert!(RestartPolicy::Always.restarts_after(0));
        assert!(!RestartPolicy::Never.restarts_after(137));
    }
}
