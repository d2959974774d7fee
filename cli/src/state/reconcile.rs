//! A deployment's history reconciled with what its agents recorded: a deploy whose stream
//! was lost is recorded as [`UNKNOWN`](super::UNKNOWN), never as a guess, and the next
//! command that reaches the agent replaces that with the outcome the agent kept under the
//! deploy's id (`recent_deploys` of its status). The agent's outcome wins.

use deployctl_proto::v1 as pb;

use super::{AgentResult, DeploymentState, HistoryEntry, InstanceState};

/// What an agent reports of a deploy that has not ended (or waits for its turn).
const IN_PROGRESS: &str = "in progress";

/// How many ended deploys an agent reports at most (its record keeps no more).
const AGENT_KEEPS: usize = 50;

/// Reconciles `entry`'s history with what the agent at `agent` reports of the deployment
/// (`None`: it answered and does not have it). Returns a line for each entry whose result
/// changed, for a person.
pub(crate) fn reconcile(
    entry: &mut DeploymentState,
    agent: &str,
    status: Option<&pb::DeploymentStatus>,
    now: i64,
) -> Vec<String> {
    let records: &[pb::DeployRecord] = status.map(|s| &s.recent_deploys[..]).unwrap_or(&[]);
    let mut lines = Vec::new();
    for h in entry.history.iter_mut() {
        let unknown_here = h.agents.get(agent).is_some_and(AgentResult::is_unknown);
        if h.id.is_empty() || !unknown_here {
            continue;
        }
        let found = records.iter().rev().find(|r| r.deploy_id == h.id);
        let result = match found {
            Some(r) if r.result == IN_PROGRESS => continue,
            Some(r) => {
                fill(h, r);
                AgentResult {
                    release: if r.result == "ok" { r.release } else { 0 },
                    result: r.result.clone(),
                }
            }
            None if remembers_since(records, h.time) => AgentResult {
                release: 0,
                result: "failed: the agent has no record of this deploy (it stopped, or the deployment was removed, before the deploy began)".to_string(),
            },
            // Older than anything the agent still keeps: not known.
            None => continue,
        };
        lines.push(format!(
            "#{} on {agent}: {} (the agent's record; it was {})",
            h.number,
            describe(&result, found),
            super::UNKNOWN
        ));
        h.agents.insert(agent.to_string(), result);
        h.result = overall(h);
    }
    if lines.is_empty() {
        return lines;
    }
    if let Some(s) = status.filter(|s| s.release > 0) {
        entry
            .instances
            .insert(agent.to_string(), InstanceState::reported(s, now));
    }
    // The declaration as deployed is the newest release's that went live.
    if let Some(newest) = entry.history.iter().rev().find(|h| h.result == "ok") {
        entry.declaration = newest.declaration.clone();
    }
    lines
}

/// Whether the agent's records reach back to `time`: it would have kept a deploy begun then.
fn remembers_since(records: &[pb::DeployRecord], time: i64) -> bool {
    let ended = records.iter().filter(|r| r.result != IN_PROGRESS).count();
    ended < AGENT_KEEPS || records.first().is_some_and(|r| r.at <= time)
}

/// What the agent recorded of the deploy (the stream was lost before the outcome): its
/// ref and commit, over what the entry had.
fn fill(h: &mut HistoryEntry, r: &pb::DeployRecord) {
    if !r.git_ref.is_empty() {
        h.git_ref = r.git_ref.clone();
    }
    if !r.commit.is_empty() {
        h.commit = r.commit.clone();
        h.packages_hash = r.packages_hash.clone();
    }
}

fn describe(result: &AgentResult, r: Option<&pb::DeployRecord>) -> String {
    match r {
        Some(r) if result.result == "ok" => format!(
            "ok, release {} ({} {}) went live",
            r.release,
            r.git_ref,
            crate::output::short_commit(&r.commit)
        ),
        _ => result.result.clone(),
    }
}

/// An entry's result from its agents': the first failure (a fact whatever the others do),
/// else unknown while one is, else ok.
pub(crate) fn overall(h: &HistoryEntry) -> String {
    let failed = h
        .agents
        .values()
        .find(|a| a.result != "ok" && !a.is_unknown());
    match failed {
        Some(a) => a.result.clone(),
        None if h.agents.values().any(AgentResult::is_unknown) => super::UNKNOWN.to_string(),
        None => "ok".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::UNKNOWN;

    const A: &str = "http://10.0.0.1:7000";

    fn entry() -> DeploymentState {
        let h = |number: u32, id: &str, result: &str, release: u32| HistoryEntry {
            number,
            time: 100 * number as i64,
            git_ref: if result == "ok" {
                format!("v{number}")
            } else {
                String::new()
            },
            result: result.to_string(),
            agents: [(
                A.to_string(),
                AgentResult {
                    release,
                    result: result.to_string(),
                },
            )]
            .into(),
            id: id.to_string(),
            ..Default::default()
        };
        DeploymentState {
            history: vec![
                h(1, "d1", "ok", 1),
                h(2, "d2", UNKNOWN, 0),
                h(3, "d3", UNKNOWN, 0),
                h(4, "d4", UNKNOWN, 0),
            ],
            ..Default::default()
        }
    }

    fn record(id: &str, release: u32, result: &str) -> pb::DeployRecord {
        pb::DeployRecord {
            deploy_id: id.into(),
            release,
            git_ref: format!("v{release}"),
            commit: format!("c{release}c{release}c{release}"),
            result: result.into(),
            at: 100 * release as i64,
            ..Default::default()
        }
    }

    #[test]
    fn the_agents_outcome_replaces_an_unknown_one() {
        let mut e = entry();
        let status = pb::DeploymentStatus {
            release: 2,
            git_ref: "v2".into(),
            recent_deploys: vec![
                record("d1", 1, "ok"),
                record("d2", 2, "ok"),
                record(
                    "d3",
                    3,
                    "failed at health: interrupted: the agent stopped during the deploy",
                ),
                record("d4", 3, IN_PROGRESS),
            ],
            ..Default::default()
        };
        let lines = reconcile(&mut e, A, Some(&status), 500);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("#2 on http://10.0.0.1:7000: ok, release 2 (v2 c2c2c2)"),
            "{lines:?}"
        );
        let h = &e.history;
        assert_eq!((h[1].result.as_str(), h[1].git_ref.as_str()), ("ok", "v2"));
        assert_eq!(h[1].agents[A].release, 2);
        assert!(h[2].result.starts_with("failed at health: interrupted"));
        assert_eq!(h[2].git_ref, "v3", "what the agent knew of it");
        assert_eq!(h[2].agents[A].release, 0);
        assert_eq!(h[3].result, UNKNOWN, "still in progress there");
        assert_eq!(e.instances[A].release, 2);
        // Nothing more to learn: nothing changes.
        let again = reconcile(&mut e, A, Some(&status), 600);
        assert!(again.is_empty());
    }

    #[test]
    fn no_record_of_a_deploy_the_agent_would_remember_is_a_failure() {
        let mut e = entry();
        let lines = reconcile(&mut e, A, None, 500);
        assert_eq!(lines.len(), 3);
        assert!(e.history[1]
            .result
            .starts_with("failed: the agent has no record"));
        // An agent whose records start after the deploy cannot tell.
        let mut e = entry();
        let full = pb::DeploymentStatus {
            recent_deploys: (0..AGENT_KEEPS as u32)
                .map(|n| {
                    let mut r = record(&format!("x{n}"), 9, "ok");
                    r.at = 10_000;
                    r
                })
                .collect(),
            ..Default::default()
        };
        assert!(reconcile(&mut e, A, Some(&full), 20_000).is_empty());
        assert_eq!(e.history[1].result, UNKNOWN);
    }

    #[test]
    fn a_failure_is_the_result_else_unknown_while_an_agent_is() {
        let mut h = HistoryEntry::default();
        let r = |result: &str| AgentResult {
            release: 0,
            result: result.into(),
        };
        h.agents.insert("a".into(), r("ok"));
        h.agents.insert("b".into(), r(UNKNOWN));
        assert_eq!(overall(&h), UNKNOWN);
        h.agents
            .insert("c".into(), r("failed at fetch: no such ref"));
        assert_eq!(overall(&h), "failed at fetch: no such ref");
        h.agents.insert("b".into(), r("ok"));
        h.agents.remove("c");
        assert_eq!(overall(&h), "ok");
    }
}
