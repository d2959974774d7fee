//! A deployment's entry rebuilt from what its env's agents keep (`state rebuild`, `status
//! --refresh`): its owner, env, declaration as deployed, instances and the releases each
//! agent keeps (with the spec each was deployed with), merged by release number
//! (`releases.rs`). Nothing runs differently, and nothing the state has is dropped: a
//! release the state has already (on that agent, or the same number and commit) is left as
//! the state has it; one whose number the state gives to another deploy is left out, and
//! said so.

use deployctl_proto::v1 as pb;

use super::{DeploymentState, HistoryEntry, InstanceState, State};

mod releases;
#[cfg(test)]
mod tests;

/// One agent of the env that answered, in the env's order: its status of the deployment
/// (`None`: it does not have it).
pub(crate) struct Report<'a> {
    pub agent: &'a str,
    pub status: Option<&'a pb::DeploymentStatus>,
}

/// What happened to one deployment's entry.
#[derive(Debug)]
pub(crate) struct Rebuilt {
    pub name: String,
    /// The state had no entry of it.
    pub added: bool,
    /// The release numbers added to its history.
    pub numbers: Vec<u32>,
    /// How many agents run (or keep) it.
    pub agents: usize,
    /// Its current release (the last that worked), as its history has it now.
    pub current: Option<u32>,
    /// What to say: the summary line, then disagreements and what was left out.
    pub lines: Vec<String>,
}

/// Rebuilds `name`'s entry in `st` from `reports` (every agent of `env` that answered):
/// `declared_env` is what its declaration names (`None`: the project's default env). `None`
/// when no agent has it, or the state has it in another env (then the line says so).
pub(crate) fn rebuild(
    st: &mut State,
    name: &str,
    env: &str,
    declared_env: Option<&str>,
    reports: &[Report<'_>],
    now: i64,
) -> Option<Rebuilt> {
    let live: Vec<(&str, &pb::DeploymentStatus)> = reports
        .iter()
        .filter_map(|r| Some((r.agent, r.status?)))
        .collect();
    let (_, first) = *live.first()?;
    let added = !st.deployments.contains_key(name);
    let entry = st
        .deployments
        .entry(name.to_string())
        .or_insert_with(|| DeploymentState {
            env: env.to_string(),
            ..Default::default()
        });
    if entry.env != env {
        return Some(Rebuilt {
            name: name.to_string(),
            added: false,
            numbers: Vec::new(),
            agents: live.len(),
            current: None,
            lines: vec![format!(
                "{name}: the state has it in env {}; not rebuilt from env {env}'s agents",
                entry.env
            )],
        });
    }
    note_instances(entry, reports, now);
    let mut kept = Vec::new();
    let mut lines = Vec::new();
    for (agent, s) in &live {
        let k = releases::kept_of(agent, s);
        if k.first().is_some_and(|k| k.only_running) {
            lines.push(format!(
                "{agent} reports only the release it runs (an older agent): earlier releases there are not known"
            ));
        }
        kept.extend(k);
    }
    kept.retain(|k| !known(entry, k.agent, &k.release));
    let (entries, notes) = releases::merge(&kept, declared_env, now);
    lines.extend(notes);
    let mut numbers = Vec::new();
    for h in entries {
        if let Some(other) = entry.history.iter().find(|o| o.number == h.number) {
            lines.push(format!(
                "release {} ({}) is not in the state, whose release {} is another deploy ({}): left out, the state's is kept",
                h.number,
                short(&h),
                other.number,
                short(other)
            ));
            continue;
        }
        numbers.push(h.number);
        let at = entry.history.partition_point(|o| o.number < h.number);
        entry.history.insert(at, h);
    }
    let current = entry
        .history
        .iter()
        .rev()
        .find(|h| h.result == "ok")
        .map(|h| (h.number, h.declaration.clone()));
    // The declaration as deployed: the current release's, when the rebuild found it (or
    // the state had nothing of it).
    let found_current = current.as_ref().is_some_and(|(n, _)| numbers.contains(n));
    if added || found_current {
        entry.declaration = match &current {
            Some((_, d)) if found_current => d.clone(),
            _ => releases::declaration(first.spec.as_ref(), declared_env),
        };
        if !first.owner.is_empty() {
            entry.owner = first.owner.clone();
        }
    }
    let mut r = Rebuilt {
        name: name.to_string(),
        added,
        numbers,
        agents: live.len(),
        current: current.map(|(n, _)| n),
        lines: Vec::new(),
    };
    r.lines.push(r.summary(entry.history.len()));
    r.lines.extend(lines.into_iter().map(|l| format!("  {l}")));
    Some(r)
}

impl Rebuilt {
    /// "iris: 3 releases from 2 agents, current 3".
    fn summary(&self, total: usize) -> String {
        let agents = plural(self.agents, "agent");
        let current = match self.current {
            Some(n) => format!("current {n}"),
            None => "no release that worked".to_string(),
        };
        let name = &self.name;
        match (self.added, self.numbers.len()) {
            (true, _) => format!("{name}: {} from {agents}, {current}", plural(total, "release")),
            (false, 0) => format!(
                "{name}: the state has every release its {agents} keep ({} in its history), {current}",
                plural(total, "release")
            ),
            (false, n) => format!(
                "{name}: {} added to its history ({}) from {agents}, now {total}, {current}",
                plural(n, "release"),
                numbers(&self.numbers)
            ),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        _ => format!("{n} {word}s"),
    }
}

fn numbers(list: &[u32]) -> String {
    let list: Vec<String> = list.iter().map(|n| format!("#{n}")).collect();
    list.join(", ")
}

/// "v2 0112ce2c5d", or the commit alone.
fn short(h: &HistoryEntry) -> String {
    let commit = crate::output::short_commit(&h.commit);
    match h.git_ref.is_empty() {
        true => commit.to_string(),
        false => format!("{} {commit}", h.git_ref),
    }
}

/// Whether the history has `agent`'s release `r` already: an entry records that agent's
/// release of that number, or is the same deploy (same number and commit).
fn known(entry: &DeploymentState, agent: &str, r: &pb::KeptRelease) -> bool {
    entry.history.iter().any(|h| {
        h.agents.get(agent).is_some_and(|a| a.release == r.number)
            || (h.number == r.number && h.commit == r.commit)
    })
}

/// Each agent's instance as it reports it; one whose agent answered and does not run it
/// is not an instance any more (agents that did not answer are not in `reports`).
fn note_instances(entry: &mut DeploymentState, reports: &[Report<'_>], now: i64) {
    for r in reports {
        let Some(s) = r.status else {
            entry.instances.remove(r.agent);
            continue;
        };
        let instance = InstanceState::reported(s, now);
        entry.instances.insert(r.agent.to_string(), instance);
    }
}
