//! plan: what a deploy of a spec would change on this node, changing nothing — the commit
//! its ref names now (resolved like a deploy, with the owner's git credential), the release
//! running, and whether the Python environment would be reused or built.

use std::sync::Arc;

use super::events::Events;
use super::{packages, resolve, venv};
use crate::error::Error;
use crate::spec::Spec;
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// What a deploy would find and do here.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub git_ref: String,
    /// Empty when known only after fetching (a short commit not advertised).
    pub commit: String,
    pub current: Option<ReleaseRecord>,
    pub current_frozen: Vec<String>,
    /// none | reused | built | unknown
    pub environment: &'static str,
    pub environment_key: String,
    pub state: String,
    /// Each artifact: its path, URL, and its size when the store has it (reused).
    pub artifacts: Vec<(String, String, Option<u64>)>,
}

pub(crate) async fn plan(sup: &Arc<Supervisor>, spec: &Spec) -> Result<Plan, Error> {
    // The resolve step's events go nowhere: only its result matters here.
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let events = Events::new(tx);
    let source = resolve::resolve(sup, spec, &events)
        .await
        .map_err(|e| Error::Conflict(format!("resolve: {}", e.reason)))?;
    let commit = source
        .resolved
        .commit
        .map(|c| c.to_string())
        .or_else(|| spec.commit.clone().filter(|c| c.len() == 40))
        .unwrap_or_default();
    let d = sup.registry().get(&spec.name);
    let current = d.as_ref().and_then(|d| d.current());
    let state = sup
        .status(Some(&spec.name))
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|v| v.state.as_str().to_string())
        .unwrap_or_default();
    let current_frozen = match current.as_ref().and_then(|r| r.venv_dir.clone()) {
        Some(dir) => venv::read_frozen(&dir).await,
        None => Vec::new(),
    };
    let (environment, environment_key) = environment(sup, spec, current.as_ref(), &commit).await;
    let artifacts = artifacts(sup, spec).await;
    Ok(Plan {
        artifacts,
        git_ref: source.resolved.display,
        commit,
        current,
        current_frozen,
        environment,
        environment_key,
        state,
    })
}

/// Whether the deploy would reuse an environment on this node or build one, and its key.
async fn environment(
    sup: &Supervisor,
    spec: &Spec,
    current: Option<&ReleaseRecord>,
    commit: &str,
) -> (&'static str, String) {
    if !spec.has_packages() {
        return ("none", String::new());
    }
    if packages::venv_needs_checkout(spec) {
        // The key depends on files of the checkout: known when it is the same commit and
        // the same package declaration as the running release.
        return match current {
            Some(r)
                if !commit.is_empty()
                    && r.commit == commit
                    && r.spec.pip == spec.pip
                    && r.spec.requirements == spec.requirements
                    && r.spec.pinned == spec.pinned
                    && !r.packages_hash.is_empty() =>
            {
                ("reused", r.packages_hash.clone())
            }
            _ => ("unknown", String::new()),
        };
    }
    let pinned = !spec.pinned.is_empty();
    let toolchain = sup.venvs().toolchain().await.clone();
    let interpreter = match &spec.python {
        Some(v) => match crate::venvs::toolchain::find_python(&toolchain, v).await {
            Ok(i) => Some(i),
            Err(_) => return ("unknown", String::new()),
        },
        None => None,
    };
    let req = venv::VenvRequest {
        build_cgroups: &[],
        python: interpreter.as_ref(),
        pip: if pinned { &[] } else { &spec.pip },
        requirements: None,
        release_dir: None,
        pinned: &spec.pinned,
    };
    let key = venv::venv_key(&toolchain, &req);
    let ready = sup
        .layout()
        .venvs()
        .join(&key)
        .join(venv::COMPLETE_MARKER)
        .exists();
    (if ready { "reused" } else { "built" }, key)
}

/// Each artifact and whether the store has it (by hash: an unpinned one is downloaded).
async fn artifacts(sup: &Supervisor, spec: &Spec) -> Vec<(String, String, Option<u64>)> {
    let (store, list) = (sup.artifacts().clone(), spec.artifacts.clone());
    tokio::task::spawn_blocking(move || {
        list.iter()
            .map(|a| {
                let stored = a
                    .sha256
                    .as_deref()
                    .and_then(|hex| store.stored_bytes(&crate::artifacts::key(hex, a.extract)));
                (a.path.display().to_string(), a.shown_url(), stored)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}
