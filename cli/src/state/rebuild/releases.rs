//! The agents' kept releases of one deployment merged into history entries, by release
//! number. Where agents disagree on a number (different commits), the commit most of them
//! have wins, and among as many, the one of the agent first in the env's order; the others'
//! release of that number is left out, and said so.

use std::collections::BTreeMap;

use deployctl_proto::v1 as pb;

use crate::decl::{self, DeploymentDecl};
use crate::output::short_commit;
use crate::state::{reconcile, AgentResult, HistoryEntry, REBUILT, REFRESHED};

/// One agent's kept release of the deployment, as merged: `only_running` when the agent
/// reported no kept releases (an older agent) and this is the release it runs.
pub(super) struct Kept<'a> {
    pub agent: &'a str,
    pub release: pb::KeptRelease,
    pub only_running: bool,
    /// The client's deploy_id of the deploy that made it, when the agent still has it
    /// among its recent deploys.
    pub id: String,
}

/// What an agent keeps of a deployment: its kept releases (those with an outcome), or,
/// from an agent that reports none, the release it runs.
pub(super) fn kept_of<'a>(agent: &'a str, s: &pb::DeploymentStatus) -> Vec<Kept<'a>> {
    if !s.releases.is_empty() {
        return s
            .releases
            .iter()
            .filter(|r| r.number > 0 && !r.result.is_empty())
            .map(|r| Kept {
                agent,
                release: r.clone(),
                only_running: false,
                id: deploy_id(s, r.number),
            })
            .collect();
    }
    if s.release == 0 || s.commit.is_empty() {
        return Vec::new();
    }
    vec![Kept {
        agent,
        release: pb::KeptRelease {
            number: s.release,
            git_ref: s.git_ref.clone(),
            commit: s.commit.clone(),
            packages_hash: s.packages_hash.clone(),
            deployed_at: s.deployed_at,
            result: "ok".to_string(),
            spec: s.spec.clone(),
        },
        only_running: true,
        id: deploy_id(s, s.release),
    }]
}

/// The deploy_id of the deploy that made release `number`, among the agent's recent ones.
fn deploy_id(s: &pb::DeploymentStatus, number: u32) -> String {
    s.recent_deploys
        .iter()
        .rev()
        .find(|d| d.release == number)
        .map(|d| d.deploy_id.clone())
        .unwrap_or_default()
}

/// The declaration an agent kept with a release, in env `declared_env` (`None`: the
/// project's default env).
pub(super) fn declaration(spec: Option<&pb::DeploymentSpec>, env: Option<&str>) -> DeploymentDecl {
    let mut d = spec.map(decl::as_written).unwrap_or_default();
    d.env = env.map(str::to_string);
    d
}

/// One history entry per release number among `kept` (in the env's agents' order), and
/// what was chosen where the agents disagree.
pub(super) fn merge(
    kept: &[Kept<'_>],
    env: Option<&str>,
    now: i64,
) -> (Vec<HistoryEntry>, Vec<String>) {
    let mut by_number: BTreeMap<u32, Vec<&Kept<'_>>> = BTreeMap::new();
    for k in kept {
        by_number.entry(k.release.number).or_default().push(k);
    }
    let mut entries = Vec::new();
    let mut notes = Vec::new();
    for (number, all) in by_number {
        let (chosen, left_out) = choose(&all);
        if !left_out.is_empty() {
            notes.push(disagreement(number, &chosen, &left_out));
        }
        entries.push(entry(number, &chosen, env, now));
    }
    (entries, notes)
}

/// The agents whose release of one number is taken (the commit most have, then the env's
/// order; a release without a commit, failed before it had one, goes with any), and those
/// left out.
fn choose<'k, 'a>(all: &[&'k Kept<'a>]) -> (Vec<&'k Kept<'a>>, Vec<&'k Kept<'a>>) {
    let mut commits: Vec<(&str, usize)> = Vec::new();
    for k in all.iter().filter(|k| !k.release.commit.is_empty()) {
        match commits.iter_mut().find(|(c, _)| *c == k.release.commit) {
            Some((_, n)) => *n += 1,
            None => commits.push((&k.release.commit, 1)),
        }
    }
    // `max_by_key` keeps the last of equals: the first in the env's order is wanted.
    let best = commits
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(c, _)| c.to_string());
    all.iter().partition(|k| match &best {
        Some(c) => k.release.commit.is_empty() || &k.release.commit == c,
        None => true,
    })
}

/// How the agents disagree on release `number`, and what was kept.
fn disagreement(number: u32, chosen: &[&Kept<'_>], left_out: &[&Kept<'_>]) -> String {
    let has = |k: &&Kept<'_>| {
        let r = &k.release;
        match r.git_ref.is_empty() {
            true => format!("{} has {}", k.agent, short_commit(&r.commit)),
            false => format!(
                "{} has {} ({})",
                k.agent,
                short_commit(&r.commit),
                r.git_ref
            ),
        }
    };
    let kept: Vec<String> = chosen.iter().map(has).collect();
    let other: Vec<String> = left_out.iter().map(has).collect();
    format!(
        "release {number}: the agents disagree: {}; {}. Kept the commit most agents have (then the first agent in the env's order); the other's release {number} is left out of the history",
        kept.join(", "),
        other.join(", ")
    )
}

/// The history entry of release `number` that the `chosen` agents keep: what the first
/// of them deployed, each one's outcome, and the overall result.
fn entry(number: u32, chosen: &[&Kept<'_>], env: Option<&str>, now: i64) -> HistoryEntry {
    let first = chosen
        .iter()
        .find(|k| !k.release.commit.is_empty())
        .or(chosen.first());
    let r = first.map(|k| k.release.clone()).unwrap_or_default();
    let id = chosen
        .iter()
        .find(|k| !k.id.is_empty())
        .map(|k| k.id.clone());
    let mut h = HistoryEntry {
        number,
        time: if r.deployed_at > 0 {
            r.deployed_at
        } else {
            now
        },
        git_ref: r.git_ref.clone(),
        commit: r.commit.clone(),
        packages_hash: r.packages_hash.clone(),
        result: String::new(),
        declaration: declaration(r.spec.as_ref(), env),
        agents: chosen
            .iter()
            .map(|k| {
                let result = AgentResult {
                    release: number,
                    result: k.release.result.clone(),
                };
                (k.agent.to_string(), result)
            })
            .collect(),
        frozen: Vec::new(),
        note: match chosen.iter().all(|k| k.only_running) {
            true => REFRESHED.to_string(),
            false => REBUILT.to_string(),
        },
        id: id.unwrap_or_default(),
    };
    h.result = reconcile::overall(&h);
    h
}
