//! The shared state: what is deployed where, one document for all deployments. Every
//! change is a read-modify-write through [`StateStore::update`], which backends make
//! atomic (the file backend with an exclusive lock, temp file, fsync and rename).

mod file;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::decl::DeploymentDecl;
use crate::error::bad_input;
use crate::project::Project;

pub use file::FileState;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default = "version")]
    pub version: u32,
    #[serde(default)]
    pub deployments: BTreeMap<String, DeploymentState>,
}

fn version() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentState {
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceState {
    pub release: u32,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    #[serde(default)]
    pub packages_hash: String,
    pub url: String,
    /// The last known status: healthy, failed, ...
    pub status: String,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub agent: String,
    pub release: u32,
    pub time: i64,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    #[serde(default)]
    pub packages_hash: String,
    /// "ok" or "failed at STEP: reason".
    pub result: String,
}

/// A place the state lives; each backend makes `update` atomic against concurrent writers.
pub trait StateStore {
    fn load(&self) -> anyhow::Result<State>;
    fn update(&self, f: &mut dyn FnMut(&mut State) -> anyhow::Result<()>) -> anyhow::Result<()>;
}

/// The backend for the project's `core.state.uri`.
pub fn open(project: &Project) -> anyhow::Result<Box<dyn StateStore>> {
    let uri = project.state_uri();
    if let Some(rest) = uri.strip_prefix("file://") {
        return Ok(Box::new(FileState::new(project.root.join(rest))));
    }
    if uri.contains("://") {
        return Err(bad_input(format!(
            "core.state.uri: {uri:?} is not supported by this version (use a path or file://)"
        )));
    }
    Ok(Box::new(FileState::new(project.root.join(uri))))
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
