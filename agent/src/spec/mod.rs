//! The domain's view of a deployment: what to run, validated on the agent.
//!
//! The tonic adapter converts a proto `DeploymentSpec` into a [`Spec`] with
//! [`Spec::validate`]; nothing past this point sees unvalidated input.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) mod artifacts;
mod autoscale;
mod fields;
mod millis;
mod resources;
mod restart;
pub(crate) mod sleep;
mod switch;
mod validate;
pub(crate) mod warmup;

pub(crate) use artifacts::{Artifact, RawArtifact};
pub(crate) use autoscale::{Autoscale, RawAutoscale};
pub(crate) use resources::{RawResources, Resources};
pub(crate) use restart::RestartPolicy;
pub(crate) use switch::{ProxyMode, Strategy};
pub(crate) use warmup::{RawWarmup, Warmup};

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
    /// How long a new release may take to become ready (`health.startup_timeout`).
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Period of checks once healthy.
    #[serde(with = "millis")]
    pub interval: Duration,
    /// Consecutive failed checks after which a running instance is unhealthy (no new
    /// requests, the health endpoint says so).
    #[serde(default = "warmup::default_unhealthy_after")]
    pub unhealthy_after: u32,
    /// Consecutive failed checks after which it is restarted (at least `unhealthy_after`).
    #[serde(default = "warmup::default_restart_after")]
    pub restart_after: u32,
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
    /// With `autoscale`: how many a first deploy starts (its `min`, at least 1).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Replicas that follow the load (`replicas: {min, max, target_in_flight}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// The Python version its environment is made with (`3.11`); `None`: python3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Limits for every process of the app and for the build (none in older records).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Model and data files linked read-only into the workdir (none in older records).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// Requests sent to each instance of a new release before traffic moves to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warmup: Vec<Warmup>,
    /// No request through the node proxy for this long: the app sleeps (`None`: never).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "sleep::opt_millis"
    )]
    pub idle_timeout: Option<Duration>,
    /// How long a request to a sleeping deployment waits for it to wake.
    #[serde(with = "millis", default = "sleep::default_wake")]
    pub wake_timeout: Duration,
}

fn one() -> u32 {
    1
}

/// The most replicas a deployment may ask for on one node.
pub(crate) const MAX_REPLICAS: u32 = 64;

/// Defaults the agent applies to fields a request leaves empty.
pub(crate) const DEFAULT_PORT: u16 = 8000;
pub(crate) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
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
    pub health_unhealthy_after: u32,
    pub health_restart_after: u32,
    pub warmup: Vec<RawWarmup>,
    pub restart: String,
    pub owner: String,
    pub kill_timeout_ms: u64,
    pub strategy: String,
    pub drain_timeout_ms: u64,
    pub hold_timeout_ms: u64,
    pub proxy: String,
    pub replicas: u32,
    /// 0: `replicas` is a fixed count.
    pub replicas_max: u32,
    pub target_in_flight: u32,
    pub scale_up_after_ms: u64,
    pub scale_down_after_ms: u64,
    pub pinned: Vec<String>,
    pub commit: String,
    pub python: String,
    pub resources: RawResources,
    pub artifacts: Vec<RawArtifact>,
    /// Artifacts without a sha256 are accepted (development).
    pub allow_unpinned_artifacts: bool,
    pub idle_timeout_ms: u64,
    pub wake_timeout_ms: u64,
}

impl Spec {
    /// How many instances a deploy (or restart) of this spec starts while `running` run
    /// now: the fixed count, or the running count within the autoscaled range.
    pub(crate) fn start_count(&self, running: u32) -> u32 {
        match &self.autoscale {
            Some(a) => a.start_count(running),
            None => self.replicas.max(1),
        }
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
