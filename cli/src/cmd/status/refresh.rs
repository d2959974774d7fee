//! `status --refresh`: rebuild the state from what the agents report. The agents report
//! the release they run (its number, ref, commit, packages hash and declaration), not the
//! ones before it: a release the history does not have is recorded as its newest entry,
//! numbered as the agents number it, so `env set`, `restart` and a later `rollback` to it
//! work; what came before it stays unknown (and `rollback` says so).

use deployctl_proto::v1 as pb;

use super::{Deployment, Instance};
use crate::decl::{self, DeploymentDecl};
use crate::output::Format;
use crate::project::Project;
use crate::state::{self, AgentResult, DeploymentState, HistoryEntry};

/// Writes what the agents report into the state: every instance they run, a deployment
/// (with its declaration as deployed) the state did not know, and the running release
/// when the history does not have it.
pub(super) async fn refresh(
    project: &Project,
    out: &[Deployment],
    format: Format,
) -> anyhow::Result<()> {
    let store = state::open(project)?;
    let now = state::now_unix();
    let mut added = 0;
    let mut updated = 0;
    let mut recorded: Vec<String> = Vec::new();
    store
        .update(&mut |st| {
            added = 0;
            updated = 0;
            recorded.clear();
            for d in out {
                let live: Vec<&Instance> = d.instances.iter().filter(|i| i.s.is_some()).collect();
                let Some(first) = live.first().and_then(|i| i.s.as_ref()) else {
                    continue;
                };
                if add_unknown(project, st, d, first) {
                    added += 1;
                } else {
                    updated += 1;
                }
                let Some(entry) = st.deployments.get_mut(&d.name) else {
                    continue;
                };
                note_instances(entry, d, now);
                recorded.extend(record_running(project, entry, d, first, now));
            }
            Ok(())
        })
        .await?;
    if format == Format::Text {
        println!(
            "refreshed {}: {added} deployment(s) added, {updated} updated from the agents",
            store.describe()
        );
        for line in &recorded {
            println!("{line} (the running release; agents report no earlier ones)");
        }
    }
    Ok(())
}

/// Adds deployment `d` to the state when it does not have it (true), with the
/// declaration and owner the agent running `first` reports.
fn add_unknown(
    project: &Project,
    st: &mut state::State,
    d: &Deployment,
    first: &pb::DeploymentStatus,
) -> bool {
    if st.deployments.contains_key(&d.name) {
        return false;
    }
    st.deployments.insert(
        d.name.clone(),
        state::DeploymentState {
            declaration: declaration(project, d, first),
            env: d.env.clone(),
            owner: first.owner.clone(),
            ..Default::default()
        },
    );
    true
}

/// Each agent's instance of `d` as it reports it; one whose agent answered and does not
/// run it is not an instance any more.
fn note_instances(entry: &mut DeploymentState, d: &Deployment, now: i64) {
    for i in &d.instances {
        match (&i.s, i.state.as_str()) {
            (Some(s), _) => {
                entry.instances.insert(
                    i.agent.clone(),
                    state::InstanceState {
                        release: s.release,
                        git_ref: s.git_ref.clone(),
                        commit: s.commit.clone(),
                        packages_hash: s.packages_hash.clone(),
                        url: s.url.clone(),
                        status: s.state.clone(),
                        updated_at: now,
                    },
                );
            }
            // The agent answered and does not run it: not an instance any more.
            (None, "missing") => {
                entry.instances.remove(&i.agent);
            }
            _ => {}
        }
    }
}

/// The running release recorded in the history when it does not have it
/// (`running_release`), its declaration as deployed and the owner `first` reports made
/// the deployment's; what to say of it.
fn record_running(
    project: &Project,
    entry: &mut DeploymentState,
    d: &Deployment,
    first: &pb::DeploymentStatus,
    now: i64,
) -> Option<String> {
    let h = running_release(project, entry, d, now)?;
    let line = format!(
        "{}: release {} ({}) recorded in its history",
        d.name,
        h.number,
        if h.git_ref.is_empty() {
            crate::output::short_commit(&h.commit)
        } else {
            &h.git_ref
        }
    );
    // The declaration as deployed is the one running now.
    entry.declaration = h.declaration.clone();
    entry.owner = first.owner.clone();
    entry.history.push(h);
    Some(line)
}

/// The declaration an agent reports for what it runs, with the env it runs in.
fn declaration(project: &Project, d: &Deployment, s: &pb::DeploymentStatus) -> DeploymentDecl {
    let mut declaration = s.spec.as_ref().map(decl::from_spec).unwrap_or_default();
    if d.env != project.default_env() {
        declaration.env = Some(d.env.clone());
    }
    declaration
}

/// The history entry of the release the agents run, when the history has no entry in
/// which an agent deployed the release it runs now (a lost or new state, a deploy that
/// wrote another state). Numbered as the agents number it (never below the history's
/// next number); with every agent that runs the same commit.
fn running_release(
    project: &Project,
    entry: &DeploymentState,
    d: &Deployment,
    now: i64,
) -> Option<HistoryEntry> {
    let live: Vec<(&str, &pb::DeploymentStatus)> = d
        .instances
        .iter()
        .filter_map(|i| Some((i.agent.as_str(), i.s.as_ref()?)))
        .filter(|(_, s)| s.release > 0 && !s.commit.is_empty())
        .collect();
    let known = |agent: &str, s: &pb::DeploymentStatus| {
        entry.history.iter().any(|h| {
            h.agents
                .get(agent)
                .is_some_and(|a| a.release == s.release && a.result == "ok")
        })
    };
    let (_, first) = live.iter().find(|(agent, s)| !known(agent, s))?;
    let same: Vec<&(&str, &pb::DeploymentStatus)> = live
        .iter()
        .filter(|(_, s)| s.commit == first.commit)
        .collect();
    let highest = same.iter().map(|(_, s)| s.release).max().unwrap_or(0);
    Some(HistoryEntry {
        number: entry.next_number().max(highest),
        time: if first.deployed_at > 0 {
            first.deployed_at
        } else {
            now
        },
        git_ref: first.git_ref.clone(),
        commit: first.commit.clone(),
        packages_hash: first.packages_hash.clone(),
        result: "ok".to_string(),
        declaration: declaration(project, d, first),
        agents: same
            .iter()
            .map(|(agent, s)| {
                let result = AgentResult {
                    release: s.release,
                    result: "ok".to_string(),
                };
                (agent.to_string(), result)
            })
            .collect(),
        frozen: Vec::new(),
        note: state::REFRESHED.to_string(),
        id: String::new(),
    })
}
