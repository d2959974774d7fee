//! Declarations: `NAME.deploy.yaml` and `NAME.env.yaml`, parsed strictly (unknown fields
//! are an error naming the field) and validated before anything runs.

pub(crate) mod artifacts;
pub(crate) mod lock;
mod replicas;
mod resources;
mod spec;
pub(crate) mod warmup;

pub(crate) use artifacts::Artifact;
pub(crate) use replicas::{Autoscale, Replicas};
pub(crate) use resources::{parse_size, Resources};
pub(crate) use spec::{as_written, from_spec};
pub(crate) use warmup::Warmup;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use deployctl_proto::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::bad_input;

/// `NAME.deploy.yaml`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeploymentDecl {
    #[serde(default = "deployment_object")]
    pub object_type: String,
    #[serde(rename = "type", default = "process_type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default)]
    pub repo: String,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default)]
    pub command: String,
    #[serde(default, skip_serializing_if = "Packages::is_empty")]
    pub packages: Packages,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_script: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, Scalar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Health::is_empty")]
    pub health: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// SIGTERM → SIGKILL grace period when stopping (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_timeout: Option<String>,
    /// switch (default) | recreate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// http (default) | tcp: what the node proxy speaks on the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// How long the old release may finish its requests after a switch (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
    /// How long requests wait while no instance is healthy (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_timeout: Option<String>,
    /// No request through the node proxy for this long: the app sleeps (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// How long a request to a sleeping app waits for it to wake (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_timeout: Option<String>,
    /// Processes of the release on each node, behind the node proxy (default 1): a number,
    /// or `{min, max, target_in_flight}` to follow the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,
    /// The Python version of the environment (found on the node); default: its python3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Limits for every process of the app and, separately, the build (default: none).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Model and data files by URL and sha256, linked read-only at paths of the workdir.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Requests sent to each instance of a new release before traffic moves to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<Warmup>,
}

fn deployment_object() -> String {
    "deployment".into()
}
fn process_type() -> String {
    "process".into()
}
fn env_object() -> String {
    "env".into()
}
fn agent_type() -> String {
    "agent".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Packages {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pip: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apt: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda: Vec<String>,
}

impl Packages {
    fn is_empty(&self) -> bool {
        self.pip.is_empty() && self.apt.is_empty() && self.conda.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Health {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How long a new release may take to be ready (`timeout` is its old name).
    #[serde(default, alias = "timeout", skip_serializing_if = "Option::is_none")]
    pub startup_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Consecutive failed checks: unhealthy, no new requests (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_after: Option<u32>,
    /// Consecutive failed checks: restarted (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after: Option<u32>,
}

impl Health {
    fn is_empty(&self) -> bool {
        *self == Health::default()
    }
}

/// An env var value as YAML may write it: text, number or boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `NAME.env.yaml`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvDecl {
    #[serde(default = "env_object")]
    pub object_type: String,
    #[serde(rename = "type", default = "agent_type")]
    pub kind: String,
    /// `type: agent`: the agents, by address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// `type: fleet`: the etcd the agents register in, `etcd://HOST:PORT/PREFIX`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// `type: fleet`: which registered agents (`zone=a,gpus>=1`; none: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<String>,
    /// `type: fleet`: deploy to this many of them, those with the most room (none: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// Reads and parses a YAML declaration; errors name the file and the field.
pub(crate) fn load<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_norway::from_str(&text)
        .map(Some)
        .map_err(|e| bad_input(format!("{}: {e}", path.display())))
}

/// Writes a declaration (atomically, so an interrupted write loses nothing).
pub(crate) fn save<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_norway::to_string(value).context("encoding declaration")?;
    crate::fsutil::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// A deployment name: letters, digits, '-', '_', '.', starting with a letter or digit.
pub(crate) fn validate_name(what: &str, name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(bad_input(format!(
            "{what}: {name:?} is not a valid name (1-63 letters, digits, '-', '_' or '.', starting with a letter or digit)"
        )))
    }
}

/// "120s", "2m", "1h30m", "500ms"; a bare number means seconds.
pub(crate) fn parse_duration(field: &str, value: &str) -> anyhow::Result<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|e| {
        bad_input(format!(
            "{field}: {value:?} is not a duration ({e}); write e.g. 60s, 2m or 500ms"
        ))
    })
}

/// Whether `repo` is a URL git understands rather than a local path.
pub(crate) fn is_url(repo: &str) -> bool {
    repo.contains("://")
        || matches!((repo.find('@'), repo.find(':')), (Some(a), Some(c)) if a < c && !repo.starts_with('/'))
}

/// The repository as the agent gets it: a URL as it is; a local path taken from `base`
/// (the declaration's directory), absolute and normalised (symlinks resolved when it
/// exists), so one repository is always one path and one mirror on the agent.
pub(crate) fn absolute_repo(repo: &str, base: &Path) -> String {
    let repo = repo.trim();
    if is_url(repo) {
        return repo.to_string();
    }
    let joined = base.join(repo);
    std::fs::canonicalize(&joined)
        .unwrap_or_else(|_| normalize(&std::path::absolute(&joined).unwrap_or(joined)))
        .to_string_lossy()
        .into_owned()
}

/// A local `--repo` as the declaration keeps it: relative to the declaration's directory
/// `root` when it was given relative (from `cwd`), so the file stays portable and can be
/// committed; absolute when it was given absolute. URLs as they are.
pub(crate) fn declared_repo(repo: &str, cwd: &Path, root: &Path) -> String {
    let repo = repo.trim();
    if is_url(repo) || Path::new(repo).is_absolute() {
        return repo.to_string();
    }
    let target = normalize(&std::path::absolute(cwd.join(repo)).unwrap_or(cwd.join(repo)));
    let root = normalize(&std::path::absolute(root).unwrap_or(root.to_path_buf()));
    relative_to(&target, &root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| target.to_string_lossy().into_owned())
}

/// `.` and `..` taken out of a path, without touching the file system.
pub(crate) fn normalize(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `target` as a path relative to `base` (both absolute and normalised).
fn relative_to(target: &Path, base: &Path) -> Option<std::path::PathBuf> {
    let (t, b): (Vec<_>, Vec<_>) = (target.components().collect(), base.components().collect());
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut rel = std::path::PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    Some(if rel.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        rel
    })
}

#[cfg(test)]
mod tests;
