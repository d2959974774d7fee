//! The checks of single fields of a deployment spec: names, paths inside the checkout,
//! variable names, repository URLs. Every refusal names the field.

use std::path::{Component, Path, PathBuf};

use super::{MAX_NAME, MAX_TEXT};
use crate::error::Error;

pub(super) fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A deployment name: it names directories, log files and URLs, so it is kept plain.
pub(crate) fn validate_name(name: &str) -> Result<(), Error> {
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
pub(crate) fn validate_relative_path(field: &str, value: &str) -> Result<PathBuf, Error> {
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
pub(crate) fn validate_env_name(name: &str) -> Result<(), Error> {
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
pub(crate) const RESERVED_ENV: &[&str] = &[
    "PORT",
    "HOST",
    "DEPLOYMENT_NAME",
    "DEPLOYMENT_RELEASE",
    "DEPLOYMENT_URL",
    "GIT_COMMIT",
    "VIRTUAL_ENV",
    "DATA_DIR",
    "TMPDIR",
    "DEPLOY_INSTANCE",
    "PATH",
];

/// Why a variable the agent sets for every app cannot be set by its declaration (it would
/// be replaced, silently, at every start).
pub(crate) fn reserved_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "PORT" | "HOST" => "is where the agent tells the app to listen ($HOST:$PORT); it cannot be set (the deployment's public port is `port`)",
        "PATH" => "is the agent's: the deployment's environment first, then the system's; to put a directory first, say so in the command: --command 'PATH=/opt/tool/bin:$PATH python app.py'",
        "DEPLOY_INSTANCE" => "is how the agent finds every process of an instance; it cannot be set",
        "DATA_DIR" | "TMPDIR" => "is the deployment's own directory, set by the agent; it cannot be set",
        other if RESERVED_ENV.contains(&other) => "is set by the agent itself and cannot be overridden",
        _ => return None,
    })
}

pub(super) fn opt_path(field: &str, value: &str) -> Result<Option<PathBuf>, Error> {
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
pub(crate) fn is_remote_url(repo: &str) -> bool {
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

/// Whether `package` is a Debian package name (`name` or `name=version`): lower-case
/// letters, digits, `+ - .`, starting with a letter or digit; versions add `~ :` and
/// upper-case. Nothing that `apt-get` could take for an option.
pub(crate) fn is_apt_package(package: &str) -> bool {
    let (name, version) = match package.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (package, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '~' | ':'))
    });
    name_ok && version_ok
}
