//! After a deploy: what each agent did, written into the state (instances, the
//! declaration as deployed, and a history entry), under the state's lock.

use std::collections::BTreeMap;

use deployctl_proto::v1 as pb;

use super::{AgentResult, NotDeployed};
use crate::decl::DeploymentDecl;
use crate::state::{
    self, AgentResult as AgentOutcome, DeploymentState, HistoryEntry, InstanceState,
};

/// Writes what the agents that accepted the deploy did into the state, under its lock: each
/// one's outcome and instance, the declaration as deployed (when it went live somewhere),
/// and a history entry. A first deploy that failed everywhere leaves no deployment behind.
pub(super) async fn record(
    store: &dyn state::StateStore,
    name: &str,
    env: &str,
    d: &DeploymentDecl,
    results: &[AgentResult],
    note: &str,
    id: &str,
) -> anyhow::Result<()> {
    if !results.iter().any(|r| r.accepted) {
        return Ok(());
    }
    let now = state::now_unix();
    store
        .update(&mut |st| {
            let entry = st.deployments.entry(name.to_string()).or_default();
            let mut agents = BTreeMap::new();
            // The outcome the history shows: the first, or the first that went live.
            let mut shown: Option<&pb::DeployOutcome> = None;
            for r in results.iter().filter(|r| r.accepted) {
                agents.insert(r.address.clone(), agent_outcome(r));
                let Ok(o) = &r.outcome else { continue };
                if shown.is_none() || (o.ok && !shown.is_some_and(|s| s.ok)) {
                    shown = Some(o);
                }
                note_instance(entry, &r.address, o, now);
            }
            let ok_somewhere = agents.values().any(|a| a.result == "ok");
            let unknown = agents.values().any(AgentOutcome::is_unknown);
            if ok_somewhere {
                entry.declaration = d.clone();
                entry.env = env.to_string();
                entry.owner = shown.map(|o| o.owner.clone()).unwrap_or_default();
            }
            let number = entry.next_number();
            let h = history_entry(number, now, d, shown, agents, note, id);
            entry.history.push(h);
            // A first deploy that failed everywhere leaves no deployment behind.
            if entry.instances.is_empty() && !ok_somewhere && !unknown {
                st.deployments.remove(name);
            }
            Ok(())
        })
        .await
}

/// What one agent's deploy came to, for the history: its release, or why it has none.
fn agent_outcome(r: &AgentResult) -> AgentOutcome {
    let (release, result) = match &r.outcome {
        Ok(o) if o.ok => (o.release, "ok".to_string()),
        Ok(o) => (
            0,
            format!("failed at {}: {}", o.failed_step, first_line(&o.reason)),
        ),
        // Not a guess: the agent's outcome is learnt later (state::reconcile).
        Err(NotDeployed::Lost(_)) => (0, state::UNKNOWN.to_string()),
        Err(e) => (0, format!("failed: {}", first_line(&e.to_string()))),
    };
    AgentOutcome { release, result }
}

/// The deployment's instance on `address` after outcome `o`: the new release where it went
/// live; otherwise, if it had one, whether what it kept is healthy.
fn note_instance(entry: &mut DeploymentState, address: &str, o: &pb::DeployOutcome, now: i64) {
    if o.ok {
        entry.instances.insert(
            address.to_string(),
            InstanceState {
                release: o.release,
                git_ref: o.git_ref.clone(),
                commit: o.commit.clone(),
                packages_hash: o.packages_hash.clone(),
                url: o.url.clone(),
                status: "healthy".to_string(),
                updated_at: now,
            },
        );
    } else if let Some(inst) = entry.instances.get_mut(address) {
        inst.status = if o.kept_healthy {
            "healthy"
        } else {
            "unhealthy"
        }
        .to_string();
        inst.updated_at = now;
    }
}

/// The deploy's history entry, numbered `number`: what the `shown` outcome deployed (or,
/// without one, the ref asked for until the agent's record says), every agent's outcome,
/// and the overall result.
fn history_entry(
    number: u32,
    now: i64,
    d: &DeploymentDecl,
    shown: Option<&pb::DeployOutcome>,
    agents: BTreeMap<String, AgentOutcome>,
    note: &str,
    id: &str,
) -> HistoryEntry {
    let mut h = HistoryEntry {
        number,
        time: now,
        // Without an outcome: the ref asked for, until the agent's record says.
        git_ref: shown
            .map(|o| o.git_ref.clone())
            .or_else(|| d.git_ref.clone())
            .unwrap_or_default(),
        commit: shown.map(|o| o.commit.clone()).unwrap_or_default(),
        packages_hash: shown.map(|o| o.packages_hash.clone()).unwrap_or_default(),
        result: String::new(),
        declaration: d.clone(),
        agents,
        frozen: shown.map(|o| o.frozen.clone()).unwrap_or_default(),
        note: note.to_string(),
        id: id.to_string(),
    };
    h.result = state::reconcile::overall(&h);
    h
}

pub(super) fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
