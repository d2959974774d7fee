//! Declarations: `NAME.deploy.yaml` and `NAME.env.yaml`, parsed strictly (unknown fields
//! are an error naming the field) and validated before anything runs.

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

impl Health {
    fn is_empty(&self) -> bool {
        self.path.is_none() && self.timeout.is_none() && self.interval.is_none()
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
    pub addresses: Vec<String>,
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

/// Writes a declaration (temporary file + rename, so an interrupted write loses nothing).
pub(crate) fn save<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_norway::to_string(value).context("encoding declaration")?;
    let tmp = path.with_extension(format!("yaml.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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

impl DeploymentDecl {
    /// Checks what can be checked without an agent; the error names the field.
    pub(crate) fn validate(&self, name: &str) -> anyhow::Result<()> {
        validate_name("name", name)?;
        if self.object_type != "deployment" {
            return Err(bad_input(format!(
                "object_type: {:?} must be \"deployment\"",
                self.object_type
            )));
        }
        if self.kind != "process" {
            return Err(bad_input(format!(
                "type: {:?} is not a deployment type (available: process)",
                self.kind
            )));
        }
        if self.repo.trim().is_empty() {
            return Err(bad_input("repo: is required (--repo URL or path)"));
        }
        if self.command.trim().is_empty() {
            return Err(bad_input(
                "command: is required (--command, e.g. \"python app.py\")",
            ));
        }
        if let Some(p) = self.port {
            if !(1..=65535).contains(&p) {
                return Err(bad_input(format!("port: {p} is out of range 1-65535")));
            }
        }
        if let Some(r) = &self.restart {
            if !matches!(r.as_str(), "always" | "on-failure" | "never") {
                return Err(bad_input(format!(
                    "restart: {r:?} is not one of always, on-failure, never"
                )));
            }
        }
        if let Some(p) = &self.health.path {
            if !p.starts_with('/') {
                return Err(bad_input(format!("health.path: {p:?} must start with '/'")));
            }
        }
        if let Some(t) = &self.health.timeout {
            parse_duration("health.timeout", t)?;
        }
        if let Some(t) = &self.health.interval {
            parse_duration("health.interval", t)?;
        }
        if let Some(t) = &self.kill_timeout {
            parse_duration("kill_timeout", t)?;
        }
        for k in self.env_vars.keys() {
            let ok = !k.is_empty()
                && !k.as_bytes()[0].is_ascii_digit()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(bad_input(format!(
                    "env_vars.{k}: is not a valid variable name"
                )));
            }
        }
        if let Some(o) = &self.owner {
            if !(o.starts_with("user:") || o.starts_with("group:")) {
                return Err(bad_input(format!(
                    "owner: {o:?} must be user:NAME or group:NAME"
                )));
            }
        }
        if let Some(env) = &self.env {
            validate_name("env", env)?;
        }
        Ok(())
    }

    /// The request the agent gets. `root` resolves a relative local repo path.
    pub(crate) fn to_spec(&self, name: &str, root: &Path) -> anyhow::Result<pb::DeploymentSpec> {
        let ms = |field: &str, v: &Option<String>| -> anyhow::Result<u64> {
            Ok(match v {
                Some(v) => parse_duration(field, v)?.as_millis() as u64,
                None => 0,
            })
        };
        Ok(pb::DeploymentSpec {
            name: name.to_string(),
            repo: absolute_repo(&self.repo, root),
            git_ref: self.git_ref.clone().unwrap_or_default(),
            workdir: self.workdir.clone().unwrap_or_default(),
            command: self.command.clone(),
            pip: self.packages.pip.clone(),
            apt: self.packages.apt.clone(),
            conda: self.packages.conda.clone(),
            requirements: self.requirements.clone().unwrap_or_default(),
            start_script: self.start_script.clone().unwrap_or_default(),
            env_vars: self
                .env_vars
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            secrets: self.secrets.clone(),
            port: self.port.unwrap_or(0) as u32,
            health_path: self.health.path.clone().unwrap_or_default(),
            health_timeout_ms: ms("health.timeout", &self.health.timeout)?,
            health_interval_ms: ms("health.interval", &self.health.interval)?,
            restart: self.restart.clone().unwrap_or_default(),
            owner: self.owner.clone().unwrap_or_default(),
            kill_timeout_ms: ms("kill_timeout", &self.kill_timeout)?,
            pinned: vec![],
        })
    }
}

/// A declaration from what an agent runs (for rebuilding a lost state).
pub(crate) fn from_spec(s: &pb::DeploymentSpec) -> DeploymentDecl {
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let dur = |ms: u64| {
        (ms > 0).then(|| {
            if ms.is_multiple_of(1000) {
                format!("{}s", ms / 1000)
            } else {
                format!("{ms}ms")
            }
        })
    };
    DeploymentDecl {
        object_type: "deployment".into(),
        kind: "process".into(),
        env: None,
        repo: s.repo.clone(),
        git_ref: opt(&s.git_ref),
        workdir: opt(&s.workdir),
        command: s.command.clone(),
        packages: Packages {
            pip: s.pip.clone(),
            apt: s.apt.clone(),
            conda: s.conda.clone(),
        },
        requirements: opt(&s.requirements),
        start_script: opt(&s.start_script),
        env_vars: s
            .env_vars
            .iter()
            .map(|(k, v)| (k.clone(), Scalar::Text(v.clone())))
            .collect(),
        secrets: s.secrets.clone(),
        port: (s.port > 0).then_some(s.port as i64),
        health: Health {
            path: opt(&s.health_path),
            timeout: dur(s.health_timeout_ms),
            interval: dur(s.health_interval_ms),
        },
        apply_path: None,
        owner: opt(&s.owner),
        restart: opt(&s.restart),
        kill_timeout: dur(s.kill_timeout_ms),
    }
}

/// Whether `repo` is a URL git understands rather than a local path.
pub(crate) fn is_url(repo: &str) -> bool {
    repo.contains("://")
        || matches!((repo.find('@'), repo.find(':')), (Some(a), Some(c)) if a < c && !repo.starts_with('/'))
}

/// A relative local path is taken from `base` (the project root or the current directory).
pub(crate) fn absolute_repo(repo: &str, base: &Path) -> String {
    let repo = repo.trim();
    if is_url(repo) || Path::new(repo).is_absolute() {
        return repo.to_string();
    }
    let joined = base.join(repo);
    std::path::absolute(&joined)
        .unwrap_or(joined)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_norway::from_str::<DeploymentDecl>("repo: x\ncommand: y\nprot: 80\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let err = serde_norway::from_str::<DeploymentDecl>("health:\n  pth: /x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pth"), "{err}");
    }

    #[test]
    fn spec_example_parses() {
        let text = r#"
object_type: deployment
type: process
env: prod
repo: https://example.org/team/app.git
ref: v1.2.0
workdir: services/api
command: uvicorn app:app --host $HOST --port $PORT
packages:
  pip: [fastapi==0.115.0, uvicorn]
  apt: []
  conda: []
requirements: requirements.txt
start_script: scripts/fetch-model.sh
env_vars: {MODEL_PATH: model.pkl, WORKERS: 2}
secrets: [DB_PASSWORD]
port: 8000
health:
  path: /health
  timeout: 120s
  interval: 10s
apply_path: /predict
owner: group:ml
restart: on-failure
"#;
        let d: DeploymentDecl = serde_norway::from_str(text).unwrap();
        d.validate("iris").unwrap();
        let spec = d.to_spec("iris", Path::new("/p")).unwrap();
        assert_eq!(spec.health_timeout_ms, 120_000);
        assert_eq!(spec.env_vars["WORKERS"], "2");
        assert_eq!(spec.git_ref, "v1.2.0");
    }

    #[test]
    fn validation_names_fields() {
        let base = DeploymentDecl {
            object_type: "deployment".into(),
            kind: "process".into(),
            repo: "/r".into(),
            command: "python app.py".into(),
            ..Default::default()
        };
        base.validate("ok").unwrap();
        let mut d = base.clone();
        d.port = Some(70000);
        assert!(d
            .validate("ok")
            .unwrap_err()
            .to_string()
            .starts_with("port:"));
        let mut d = base.clone();
        d.health.timeout = Some("soon".into());
        assert!(d
            .validate("ok")
            .unwrap_err()
            .to_string()
            .starts_with("health.timeout:"));
        assert!(base
            .validate("../x")
            .unwrap_err()
            .to_string()
            .starts_with("name:"));
        assert!(base.validate("a b").is_err());
    }

    proptest::proptest! {
        /// Any text: a declaration or an error, never a panic.
        #[test]
        fn the_parser_never_panics(text in "\\PC{0,300}") {
            if let Ok(d) = serde_norway::from_str::<DeploymentDecl>(&text) {
                let _ = d.validate("x");
                let _ = d.to_spec("x", Path::new("/p"));
            }
        }

        /// An unknown top-level field is refused, and the error names it.
        #[test]
        fn any_unknown_field_is_named(field in "[a-z]{3,12}") {
            let known = ["object_type", "type", "env", "repo", "ref", "workdir", "command",
                "packages", "requirements", "start_script", "env_vars", "secrets", "port",
                "health", "apply_path", "owner", "restart", "kill_timeout"];
            proptest::prop_assume!(!known.contains(&field.as_str()));
            let text = format!("repo: /r\ncommand: c\n{field}: 1\n");
            let err = serde_norway::from_str::<DeploymentDecl>(&text).unwrap_err().to_string();
            proptest::prop_assert!(err.contains(&field), "{}", err);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("t", "120s").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(parse_duration("t", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("t", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("t", "500ms").unwrap(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn repo_paths() {
        assert_eq!(
            absolute_repo("git@h:o/r.git", Path::new("/p")),
            "git@h:o/r.git"
        );
        assert_eq!(absolute_repo("repo", Path::new("/p")), "/p/repo");
        assert_eq!(absolute_repo("/abs", Path::new("/p")), "/abs");
    }
}
