//! A change of a deployment (run, env set/unset, rollback, clone) based on a generation:
//! the agents are asked what they run and at which generation (the history reconciled on
//! the way), the change is computed from that, and each agent gets it with that
//! generation as its base. An agent where the deployment changed meanwhile refuses it
//! (FAILED_PRECONDITION, naming what changed); then the change is computed again on fresh
//! data and redone there, or — where redoing would be wrong — refused, saying so. Never
//! silently dropped.

use anyhow::anyhow;

use super::deploy::{deploy, How};
use crate::client;
use crate::cmd::fresh::{self, Fresh};
use crate::decl::DeploymentDecl;
use crate::output::Format;
use crate::project::Project;

/// How many times a change is computed and sent again to agents where it keeps being stale.
pub(crate) const ATTEMPTS: usize = 5;

/// What to do where an agent refuses a change as based on a stale generation.
pub(crate) enum OnStale {
    /// Compute it again on fresh data and send it there again.
    Redo,
    /// Refuse: redoing it would be wrong. The message says why and what to do.
    Refuse(String),
}

/// A change to deploy: its declaration, the one it replaces in the file (`run`), and how.
pub(crate) struct Change {
    pub d: DeploymentDecl,
    pub existing: Option<DeploymentDecl>,
    pub how: How,
}

/// What a change did.
pub(crate) struct Changed {
    /// It went live on some agent.
    pub deployed: bool,
    /// The exit.
    pub result: anyhow::Result<()>,
}

/// Deploys the change `prepare` computes from what the agents of `env` report of `name`
/// (`None`: nothing to do), each agent told the generation it is based on; where the
/// deployment changed meanwhile, `on_stale` says what happens.
pub(crate) async fn deploy_change(
    project: &Project,
    name: &str,
    env: &str,
    format: Format,
    on_stale: OnStale,
    mut prepare: impl FnMut(&Fresh) -> anyhow::Result<Option<Change>>,
) -> anyhow::Result<Changed> {
    let target = client::resolve_env(project, env)?;
    let mut only: Option<Vec<String>> = None;
    let mut deployed = false;
    let mut failed: Option<anyhow::Error> = None;
    for attempt in 1..=ATTEMPTS {
        let fresh = fresh::ask(project, name, &target, only.as_deref(), format).await?;
        let Some(mut change) = prepare(&fresh)? else {
            break;
        };
        change.how.bases = fresh.bases();
        change.how.only = only.clone();
        let done = deploy(
            project,
            name,
            change.d,
            change.existing.as_ref(),
            change.how,
        )
        .await?;
        deployed |= done.deployed;
        if let Err(e) = done.result {
            failed.get_or_insert(e);
        }
        if done.stale.is_empty() {
            break;
        }
        let agents: Vec<String> = done.stale.iter().map(|(a, _)| a.clone()).collect();
        match &on_stale {
            OnStale::Refuse(why) => {
                stale_lines(name, &done.stale, format, "nothing was changed there");
                failed = Some(anyhow!("{why}"));
                break;
            }
            OnStale::Redo if attempt == ATTEMPTS => {
                stale_lines(name, &done.stale, format, "nothing was changed there");
                failed = Some(anyhow!(
                    "{name} kept changing on {} while this change was prepared ({ATTEMPTS} attempts); nothing more was changed there: run the command again",
                    agents.join(", ")
                ));
            }
            OnStale::Redo => {
                let next = format!(
                    "computing the change again on what runs there now (attempt {} of {ATTEMPTS})",
                    attempt + 1
                );
                stale_lines(name, &done.stale, format, &next);
                only = Some(agents);
            }
        }
    }
    Ok(Changed {
        deployed,
        result: failed.map_or(Ok(()), Err),
    })
}

/// Says where a change was refused as stale, what changed there, and what happens now.
fn stale_lines(name: &str, stale: &[(String, String)], format: Format, then: &str) {
    for (agent, why) in stale {
        match format {
            Format::Text => eprintln!("↻ {name} on {agent}: {why}; {then}"),
            Format::Json => println!(
                "{}",
                serde_json::json!({"agent": agent, "result": "stale", "reason": why, "then": then})
            ),
        }
    }
}
