//! One attempt at a deploy: declaration `d` to the env's agents (each told the generation
//! the deploy is based on and the deploy's id), the declaration written back, the result
//! recorded in the state and reported. Agents that refused it as based on a stale
//! generation are handed back to [`super::attempts`], which redoes or refuses.

use std::collections::BTreeMap;
use std::sync::Arc;

use deployctl_proto::v1 as pb;

use super::waves::{deploy_in_waves, Ask, Deploy};
use super::{record, report, AgentResult, NotDeployed, Rollout};
use crate::client;
use crate::decl::{self, DeploymentDecl};
use crate::output::{Format, Progress};
use crate::project::Project;
use crate::state;

/// How a deploy runs and is shown.
#[derive(Debug, Clone, Default)]
pub(crate) struct How {
    pub format: Format,
    /// Show the installer's output lines.
    pub verbose: bool,
    /// Save the declaration over the existing one once it deployed somewhere.
    pub write_back: bool,
    /// Exact package versions to install (a locked deploy or a rollback).
    pub pinned: Vec<String>,
    /// In which waves the agents get it.
    pub rollout: Rollout,
    /// Exactly this commit, the declaration's ref being only its name (rollback, env set).
    pub commit: Option<String>,
    /// What the history says this change was, when not a plain deploy.
    pub note: String,
    /// Per agent: the generation the change is based on (an agent not named: no check).
    pub bases: BTreeMap<String, u64>,
    /// Only these agents of the env (a redo where the others have it); `None`: all.
    pub only: Option<Vec<String>>,
    /// Artifacts without a sha256 are accepted (`run --allow-unpinned`; a redeploy of
    /// what was deployed so).
    pub allow_unpinned: bool,
}

/// What an attempt did.
pub(crate) struct Attempt {
    /// The agents that refused it as based on a stale generation, and what changed there.
    pub stale: Vec<(String, String)>,
    /// It went live on some agent.
    pub deployed: bool,
    /// The exit: an agent failed (reported), or none did.
    pub result: anyhow::Result<()>,
}

/// Deploys declaration `d` of `name` to the agents of its env (`how.only` of them), records
/// the result and reports it (the agents that refused a stale base are left to the
/// caller). With `write_back`, a declaration that deployed somewhere is saved over
/// `existing`.
pub(crate) async fn deploy(
    project: &Project,
    name: &str,
    d: DeploymentDecl,
    existing: Option<&DeploymentDecl>,
    how: How,
) -> anyhow::Result<Attempt> {
    let How {
        format,
        verbose,
        write_back,
        pinned,
        rollout,
        commit,
        note,
        bases,
        only,
        allow_unpinned,
    } = how;
    let env = d.env.clone().unwrap_or_else(|| project.default_env());
    let mut target = client::resolve_env(project, &env)?;
    if let Some(only) = &only {
        target.addresses.retain(|a| only.contains(a));
    }
    let mut spec = spec_of(project, name, &d, pinned, commit)?;
    spec.allow_unpinned_artifacts = allow_unpinned;
    let store = state::open(project)?;
    if format == Format::Text {
        announce(name, &spec, &env, &target.addresses);
    }
    let progress = Arc::new(Progress::new(format, target.addresses.len(), verbose));
    let id = deploy_id();
    let ask = Ask::Deploy(Box::new(Deploy {
        spec,
        bases,
        id: id.clone(),
    }));
    let all = deploy_in_waves(&target, &ask, &progress, rollout, format).await;
    let (stale, results) = split_stale(all);

    // The declaration is written back once the deploy worked on an agent: a deploy that
    // fails everywhere (bad ref, broken release, invalid request) changes nothing.
    let deployed = results.iter().any(|r| matches!(&r.outcome, Ok(o) if o.ok));
    if write_back && deployed && existing != Some(&d) {
        decl::save(&project.deployment_file(name), &d)?;
    }
    record::record(&*store, name, &env, &d, &results, &note, &id).await?;
    let result = if results.is_empty() {
        Ok(())
    } else {
        report::report(name, &results, format)
    };
    Ok(Attempt {
        stale,
        deployed,
        result,
    })
}

/// The spec the agents get: declaration `d` of `name`, with the exact package versions
/// `pinned` and, when given, exactly `commit`.
fn spec_of(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
    pinned: Vec<String>,
    commit: Option<String>,
) -> anyhow::Result<pb::DeploymentSpec> {
    let mut spec = d.to_spec(name, &project.root)?;
    spec.pinned = pinned;
    if let Some(c) = commit {
        spec.commit = c;
    }
    Ok(spec)
}

/// Says what is deployed where, for a person.
fn announce(name: &str, spec: &pb::DeploymentSpec, env: &str, addresses: &[String]) {
    let at = if spec.git_ref.is_empty() {
        "the remote HEAD"
    } else {
        &spec.git_ref
    };
    println!(
        "Deploying {name} ({} at {at}) to env {env}: {}",
        spec.repo,
        addresses.join(", ")
    );
}

/// The agents that refused the deploy as based on a stale generation (each with what
/// changed there), apart from the others' results.
fn split_stale(all: Vec<AgentResult>) -> (Vec<(String, String)>, Vec<AgentResult>) {
    let (stale, results): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| matches!(r.outcome, Err(NotDeployed::Stale(_))));
    let stale = stale
        .into_iter()
        .map(|r| {
            (
                r.address,
                r.outcome.err().map(|e| e.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    (stale, results)
}

/// A new id for a deploy, which the agents keep its result by: unique across processes and
/// machines (time, pid, host, a counter), 1-64 of letters, digits, '.', '_', '-'.
fn deploy_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let host: String = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(24)
        .collect();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{ms:x}-{:x}-{n}-{host}", std::process::id())
}

#[cfg(test)]
mod tests {
    #[test]
    fn deploy_ids_are_new_each_time_and_what_agents_take() {
        let (a, b) = (super::deploy_id(), super::deploy_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(id.len() <= 64, "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "{id}"
            );
        }
    }
}
