//! What the agents of a deployment's env report of it now, before a command acts on it:
//! each agent's generation (what a change is based on) and what it runs; and the state's
//! history reconciled with their records on the way (a deploy whose stream was lost gets
//! the outcome the agent recorded: [`state::reconcile`]).

use std::collections::BTreeMap;

use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit, Target};
use crate::output::Format;
use crate::project::Project;
use crate::state::{self, DeploymentState};

/// One agent's answer: its status of the deployment (`None`: it does not have it), or why
/// it did not answer.
pub(crate) type Report = Result<Option<pb::DeploymentStatus>, String>;

/// The deployment as the state (reconciled) and its agents have it now.
pub(crate) struct Fresh {
    /// Its entry in the state, `None` when the state does not have it.
    pub entry: Option<DeploymentState>,
    /// Each agent asked, in the env's order.
    pub agents: Vec<(String, Report)>,
}

impl Fresh {
    /// What a change is based on at each agent that answered: its generation (0: it does
    /// not have the deployment). An agent that did not answer is not named (no check).
    pub(crate) fn bases(&self) -> BTreeMap<String, u64> {
        self.agents
            .iter()
            .filter_map(|(a, r)| {
                let r = r.as_ref().ok()?;
                Some((a.clone(), r.as_ref().map(|s| s.generation).unwrap_or(0)))
            })
            .collect()
    }

    /// What runs: the status of the first agent (in the env's order) with a current
    /// release of it.
    pub(crate) fn running(&self) -> Option<&pb::DeploymentStatus> {
        self.agents
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok()?.as_ref())
            .find(|s| s.release > 0 && s.spec.is_some())
    }
}

/// Asks the agents of `target` (`only` these, when given) for `name`, each within the
/// timeout, and reconciles the state's history with what they report.
pub(crate) async fn ask(
    project: &Project,
    name: &str,
    target: &Target,
    only: Option<&[String]>,
    format: Format,
) -> anyhow::Result<Fresh> {
    let mut target = target.clone();
    if let Some(only) = only {
        target.addresses.retain(|a| only.contains(a));
    }
    let wanted = name.to_string();
    let replies = client::for_each_agent(&target, Limit::Answer, move |c| {
        status_of(c, wanted.clone())
    });
    let agents: Vec<(String, Report)> = replies
        .all()
        .await
        .into_iter()
        .map(|r| (r.address, r.result.map_err(|e| e.message)))
        .collect();
    let entry = record(project, name, &agents, format).await?;
    Ok(Fresh { entry, agents })
}

/// For a command that needs no base (history, restart, start, stop): when the history has
/// deploys whose result is not known, asks the env's agents (never starting one) and
/// reconciles. Agents that do not answer leave it as it is.
pub(crate) async fn reconcile_unknown(
    project: &Project,
    name: &str,
    format: Format,
) -> anyhow::Result<()> {
    let Ok(entry) = state::find(project, name).await else {
        return Ok(());
    };
    if !entry.has_unknown() {
        return Ok(());
    }
    let Ok(target) = client::resolve_env(project, &entry.env) else {
        return Ok(());
    };
    ask(project, name, &target.no_autostart(), None, format).await?;
    Ok(())
}

/// Writes what the agents reported into `name`'s history, under the state's lock, when it
/// has results not known yet; says what changed (text). The entry as it is then.
pub(crate) async fn record(
    project: &Project,
    name: &str,
    agents: &[(String, Report)],
    format: Format,
) -> anyhow::Result<Option<DeploymentState>> {
    let store = state::open(project)?;
    let current = store.load().await?.deployments.remove(name);
    if !current.as_ref().is_some_and(DeploymentState::has_unknown) {
        return Ok(current);
    }
    let now = state::now_unix();
    let mut lines = Vec::new();
    let mut after = None;
    store
        .update(&mut |st| {
            lines.clear();
            let Some(entry) = st.deployments.get_mut(name) else {
                after = None;
                return Ok(());
            };
            for (agent, report) in agents {
                if let Ok(status) = report {
                    lines.extend(state::reconcile::reconcile(
                        entry,
                        agent,
                        status.as_ref(),
                        now,
                    ));
                }
            }
            after = Some(entry.clone());
            // A first deploy that turned out to fail everywhere leaves nothing behind.
            let nothing = entry.instances.is_empty()
                && !entry
                    .history
                    .iter()
                    .any(|h| h.result == "ok" || h.is_unknown());
            if nothing && !lines.is_empty() {
                st.deployments.remove(name);
                after = None;
            }
            Ok(())
        })
        .await?;
    if format == Format::Text && !lines.is_empty() {
        println!("history of {name}: the agents' records of deploys whose result was not known:");
        for line in &lines {
            println!("  {line}");
        }
    }
    Ok(after)
}

/// One agent's status of `name` (`None`: it does not have it).
async fn status_of(mut c: Call, name: String) -> Result<Option<pb::DeploymentStatus>, CallError> {
    let req = pb::StatusRequest {
        name: name.clone(),
        ..Default::default()
    };
    match c.client.status(req).await {
        Ok(r) => Ok(r
            .into_inner()
            .deployments
            .into_iter()
            .find(|s| s.name == name)),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}
