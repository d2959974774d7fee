//! The shared state: what is deployed where, for all deployments. Every change is a
//! read-modify-write through [`StateStore::update`], which each backend makes atomic
//! against concurrent writers: the file backend with an exclusive lock, temporary file,
//! fsync and rename; the etcd backend with a transaction that compares revisions.

mod compare;
mod etcd;
mod file;
pub(crate) mod rebuild;
pub(crate) mod reconcile;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::decl::DeploymentDecl;
use crate::error::bad_input;
use crate::project::Project;

pub(crate) use compare::{compare, Fit};
pub(crate) use etcd::EtcdState;
pub(crate) use file::FileState;

/// The note of a history entry `status --refresh` or `state rebuild` wrote for a release
/// it found running that the history did not have, from an agent that reports only the
/// release it runs (an older one; before `state rebuild`, every agent).
pub(crate) const REFRESHED: &str = "found running by status --refresh";

/// The note of a history entry `state rebuild` (or `status --refresh`) wrote from the
/// releases the agents keep.
pub(crate) const REBUILT: &str = "rebuilt from the agents' records";

/// The result of a deploy whose stream was lost before its outcome: not a guess. The next
/// command that reaches the agent records the outcome the agent recorded
/// ([`reconcile`]).
pub(crate) const UNKNOWN: &str = "unknown (lost the connection)";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    #[serde(default = "version")]
    pub version: u32,
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentState>,
}

fn version() -> u32 {
    1
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeploymentState {
    /// The declaration as last deployed.
    pub declaration: DeploymentDecl,
    pub env: String,
    #[serde(default)]
    pub owner: String,
    /// Per agent address: the instance there.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceState>,
    /// Every deploy, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstanceState {
    /// The agent's release number of what runs there.
    pub release: u32,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    #[serde(default)]
    pub packages_hash: String,
    pub url: String,
    /// The last known status: healthy, unhealthy, ...
    pub status: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

impl InstanceState {
    /// The instance an agent reports (its status of the deployment), as of `now`.
    pub(crate) fn reported(s: &deployctl_proto::v1::DeploymentStatus, now: i64) -> Self {
        InstanceState {
            release: s.release,
            git_ref: s.git_ref.clone(),
            commit: s.commit.clone(),
            packages_hash: s.packages_hash.clone(),
            url: s.url.clone(),
            status: s.state.clone(),
            updated_at: now,
        }
    }
}

/// One deploy of a deployment (to every agent of its env).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HistoryEntry {
    /// 1, 2, 3, ... per deployment: what `rollback --to N` names.
    pub number: u32,
    /// Unix seconds.
    pub time: i64,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    #[serde(default)]
    pub packages_hash: String,
    /// "ok", or "failed at STEP: reason" (the first failure among the agents).
    pub result: String,
    /// The declaration deployed, so a rollback deploys exactly it again.
    pub declaration: DeploymentDecl,
    /// Per agent: its release number (0 when it failed there) and result.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentResult>,
    /// The exact versions installed (`pip freeze`), for `run --locked` and rollbacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
    /// What kind of change it was, when not a plain deploy: "rollback to #1",
    /// "env set KEY", ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The id the agents keep the deploy by (`deploy_id`): how a result that was unknown is
    /// found in their record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AgentResult {
    pub release: u32,
    pub result: String,
}

/// The env `name` is deployed to, and its declaration: as deployed (in the state), else its
/// declaration file's (if any), the env defaulting to the project's.
pub(crate) fn env_of(
    project: &Project,
    st: &State,
    name: &str,
) -> anyhow::Result<(String, Option<DeploymentDecl>)> {
    if let Some(d) = st.deployments.get(name) {
        return Ok((d.env.clone(), Some(d.declaration.clone())));
    }
    let declared = crate::decl::load::<DeploymentDecl>(&project.deployment_file(name))?;
    let env = declared
        .as_ref()
        .and_then(|d| d.env.clone())
        .unwrap_or_else(|| project.default_env());
    Ok((env, declared))
}

/// A deployment's entry, or "not found in the state" naming it.
pub(crate) async fn find(project: &Project, name: &str) -> anyhow::Result<DeploymentState> {
    let mut st = open(project)?.load().await?;
    st.deployments
        .remove(name)
        .ok_or_else(|| anyhow::anyhow!("deployment {name:?} not found in the state"))
}

impl DeploymentState {
    pub(crate) fn next_number(&self) -> u32 {
        self.history.iter().map(|h| h.number).max().unwrap_or(0) + 1
    }

    /// The first release of the history when it starts with what `status --refresh`
    /// found running: nothing before it is known.
    pub(crate) fn refreshed_from(&self) -> Option<&HistoryEntry> {
        self.history.first().filter(|h| h.is_refreshed())
    }
}

impl HistoryEntry {
    /// Written by `status --refresh` (see [`REFRESHED`]), not by a deploy.
    pub(crate) fn is_refreshed(&self) -> bool {
        self.note == REFRESHED
    }

    /// Written from what the agents keep or run ([`REFRESHED`], [`REBUILT`]), not by a
    /// deploy: a record that has the same deploy from a deploy is the better one.
    pub(crate) fn is_from_agents(&self) -> bool {
        self.is_refreshed() || self.note == REBUILT
    }

    /// How it ended is not known yet on some agent (see [`UNKNOWN`]).
    pub(crate) fn is_unknown(&self) -> bool {
        self.result == UNKNOWN || self.agents.values().any(AgentResult::is_unknown)
    }
}

impl AgentResult {
    pub(crate) fn is_unknown(&self) -> bool {
        self.result == UNKNOWN
    }
}

impl DeploymentState {
    /// Whether some deploy's result is not known yet on some agent.
    pub(crate) fn has_unknown(&self) -> bool {
        self.history.iter().any(HistoryEntry::is_unknown)
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;
/// A change to the state; it may run more than once (the etcd backend retries on conflict).
pub(crate) type Change<'a> = &'a mut (dyn FnMut(&mut State) -> anyhow::Result<()> + Send);

/// A place the state lives. `update` is atomic: no concurrent writer's change is lost.
pub(crate) trait StateStore: Send + Sync {
    fn load(&self) -> BoxFuture<'_, State>;
    fn update<'a>(&'a self, change: Change<'a>) -> BoxFuture<'a, ()>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// The backend for the project's `core.state.uri`: a path (relative to the project root),
/// `file:///abs/path`, or `etcd://HOST:PORT/PREFIX`.
pub(crate) fn open(project: &Project) -> anyhow::Result<Box<dyn StateStore>> {
    open_with(
        project,
        "core.state.uri",
        &project.state_uri(),
        "check core.state.uri in .deployctl.yaml",
    )
}

/// The backend `uri` names (a value for core.state.uri, not yet the setting).
pub(crate) fn open_uri(project: &Project, uri: &str) -> anyhow::Result<Box<dyn StateStore>> {
    open_with(project, "core.state.uri", uri, "")
}

/// The backend a flag names; errors name `flag` (`--from`, `--to`).
pub(crate) fn open_as(
    project: &Project,
    flag: &str,
    uri: &str,
) -> anyhow::Result<Box<dyn StateStore>> {
    open_with(project, flag, uri, &format!("check {flag}"))
}

/// `advice`: what to check when it does not answer.
fn open_with(
    project: &Project,
    field: &str,
    uri: &str,
    advice: &str,
) -> anyhow::Result<Box<dyn StateStore>> {
    if uri.trim().is_empty() {
        return Err(bad_input(format!("{field}: must not be empty")));
    }
    if let Some(rest) = uri.strip_prefix("etcd://") {
        return Ok(Box::new(
            EtcdState::parse(rest, advice)
                .map_err(|e| bad_input(format!("{field}: {uri:?}: {e}")))?,
        ));
    }
    match file_path(project, uri) {
        Some(path) => Ok(Box::new(FileState::new(path))),
        None => Err(bad_input(format!(
            "{field}: {uri:?} is not supported (use a path, file:///path or etcd://HOST:PORT/PREFIX)"
        ))),
    }
}

/// The file a state URI names (a path relative to the project root, or `file:///path`);
/// `None` for etcd and anything else.
pub(crate) fn file_path(project: &Project, uri: &str) -> Option<std::path::PathBuf> {
    let path = match uri.strip_prefix("file://") {
        Some(rest) => rest,
        None if uri.contains("://") || uri.trim().is_empty() => return None,
        None => uri,
    };
    let joined = project.root.join(path);
    // `a/./b.json` and `a/b.json` are one file: the same place for `state copy`.
    Some(std::path::absolute(&joined).unwrap_or(joined))
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
