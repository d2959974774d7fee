//! `rollback NAME [--to N]`: deploy an earlier release again, exactly: its declaration as
//! deployed then, pinned to its commit. Default: the release before the current one.
//! The declaration file is left as it is.

use anyhow::anyhow;

use super::fresh::Fresh;
use super::run::{Change, OnStale};
use crate::decl::{self, DeploymentDecl};
use crate::error::bad_input;
use crate::output::Format;
use crate::project::Project;
use crate::state::{self, DeploymentState, HistoryEntry};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment to roll back (as in `deployctl status`)
    pub name: String,
    /// The release number to go back to (see `deployctl history NAME`)
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    let name = &args.name;
    // No other command of this project changes it until this one has recorded its result.
    let _lock = decl::lock::lock(project, name)?;
    let env = state::find(project, name).await?.env;
    let mut chosen: Option<state::HistoryEntry> = None;
    // Chosen on the history reconciled with what the agents recorded, at the generation
    // they report.
    let prepare = |fresh: &Fresh| {
        let entry = fresh
            .entry
            .as_ref()
            .ok_or_else(|| anyhow!("deployment {name:?} not found in the state"))?;
        let agents: Vec<&str> = fresh.agents.iter().map(|(a, _)| a.as_str()).collect();
        let (target, change) = plan(entry, &args, &agents, format)?;
        chosen = Some(target);
        Ok(Some(change))
    };
    // Where it changed meanwhile: the release before the current one is another one now,
    // so a rollback without --to is not redone; one --to a release is.
    let on_stale = match args.to {
        Some(_) => OnStale::Redo,
        None => OnStale::Refuse(format!(
            "{name} changed meanwhile (see above): the release before the current one may not be the one this rollback chose, so nothing was rolled back there. See `deployctl history {name}`, then `deployctl rollback {name} --to N`"
        )),
    };
    super::run::deploy_change(project, name, &env, format, on_stale, prepare)
        .await?
        .result?;
    let Some(entry) = chosen else {
        return Ok(());
    };
    // The declaration is not changed: say what a later `run --load` would do.
    let declared = decl::load::<DeploymentDecl>(&project.deployment_file(name))
        .ok()
        .flatten();
    if let (Some(d), Format::Text) = (declared, format) {
        if d.git_ref.as_deref() != Some(entry.git_ref.as_str()) {
            println!(
                "note: {name}.deploy.yaml still names ref {}; `deployctl run --load {name}` would deploy that again. To stay on this release's code, set it: `deployctl declare deployment {name} --ref {}`",
                d.git_ref.as_deref().unwrap_or("(the remote HEAD)"),
                if entry.git_ref.is_empty() { &entry.commit } else { &entry.git_ref }
            );
        }
    }
    Ok(())
}

/// The release to go back to in `d`'s history (reconciled), and the change that deploys
/// it again exactly: its declaration as deployed then, pinned to its commit and versions.
fn plan(
    d: &DeploymentState,
    args: &Args,
    agents: &[&str],
    format: Format,
) -> anyhow::Result<(HistoryEntry, Change)> {
    let name = &args.name;
    let good: Vec<&HistoryEntry> = d.history.iter().filter(|h| h.result == "ok").collect();
    let entry = match args.to {
        Some(n) => release_asked(d, name, n, agents)?,
        None => release_before_current(d, name, &good, agents)?,
    };
    let current = good.last().map(|h| h.number).unwrap_or(0);
    if format == Format::Text {
        println!(
            "Rolling {} back to release {} ({} {})",
            name,
            entry.number,
            entry.git_ref,
            crate::output::short_commit(&entry.commit)
        );
    }
    Ok((entry.clone(), again(entry, current, format)))
}

/// Release `n` of `d` (`--to N`): one it has, known on every agent of the env, that
/// deployed.
fn release_asked<'a>(
    d: &'a DeploymentState,
    name: &str,
    n: u32,
    agents: &[&str],
) -> anyhow::Result<&'a HistoryEntry> {
    let refreshed = d.refreshed_from().map(|h| h.number);
    let e = d.history.iter().find(|h| h.number == n).ok_or_else(|| {
        bad_input(match refreshed.filter(|start| n < *start) {
            Some(start) => format!(
                "--to: release {n} is from before {name}'s history, which starts at {}",
                unknown_before(name, start)
            ),
            None => {
                format!("--to: {name} has no release {n} (see `deployctl history {name}`)")
            }
        })
    })?;
    if unknown_on(e, agents) {
        return Err(anyhow!("--to: {}", not_known(name, e)));
    }
    if e.result != "ok" {
        return Err(bad_input(format!(
            "--to: release {n} did not deploy ({}); pick one that did",
            e.result
        )));
    }
    Ok(e)
}

/// The successful release before the current one (`good`: the successful ones, in
/// order), while no deploy after it has an outcome not known on an agent of the env.
fn release_before_current<'a>(
    d: &DeploymentState,
    name: &str,
    good: &[&'a HistoryEntry],
    agents: &[&str],
) -> anyhow::Result<&'a HistoryEntry> {
    let target = match good.len() {
        0 | 1 => {
            return Err(match d.refreshed_from().map(|h| h.number) {
                Some(start) => anyhow!(
                    "{name} has no earlier release to roll back to in the state: its history starts at {}",
                    unknown_before(name, start)
                ),
                None => anyhow!("{name} has no earlier successful release to roll back to"),
            })
        }
        n => good[n - 2],
    };
    // A deploy after it whose result is not known may have gone live: which
    // release is current, and which one is before it, is not known.
    if let Some(u) = d
        .history
        .iter()
        .find(|h| h.number > target.number && unknown_on(h, agents))
    {
        return Err(anyhow!("{}", not_known(name, u)));
    }
    Ok(target)
}

/// Whether deploy `h`'s result is not known on an agent of the env (one that left it will
/// never say).
fn unknown_on(h: &HistoryEntry, agents: &[&str]) -> bool {
    h.agents
        .iter()
        .any(|(a, r)| r.is_unknown() && agents.contains(&a.as_str()))
}

/// Why nothing before release `start` is known: the history starts with what `status
/// --refresh` or `state rebuild` found running on agents that report only the release they
/// run (older agents keep no releases they can report).
fn unknown_before(name: &str, start: u32) -> String {
    format!(
        "release {start}, the one running when `deployctl status --refresh` (or `state rebuild`) rebuilt the state: its agents reported only the release they run (an older agent), so the declarations and commits of earlier releases are not known here. To go back to older code, deploy it by its ref or commit: `deployctl run {name} --ref REF` (a rollback can return to it later)"
    )
}

/// The change that deploys `entry` again (from release `current`): exactly its commit,
/// still known by its own ref (e.g. v1.0.0) in status and history, and exactly the
/// versions it ran with.
fn again(entry: &HistoryEntry, current: u32, format: Format) -> Change {
    let mut target = entry.declaration.clone();
    target.git_ref = (!entry.git_ref.is_empty()).then(|| entry.git_ref.clone());
    let how = super::run::How {
        format,
        // The same environment too: exactly the versions that release ran with.
        pinned: entry.frozen.clone(),
        commit: Some(entry.commit.clone()),
        note: format!("rollback to #{} (from #{current})", entry.number),
        // The release it goes back to was deployed with its artifacts as they were.
        allow_unpinned: true,
        ..Default::default()
    };
    Change {
        d: target,
        existing: None,
        how,
    }
}

/// Why a rollback cannot choose while deploy `h`'s result is not known on some agent.
fn not_known(name: &str, h: &HistoryEntry) -> String {
    let agents: Vec<&str> = h
        .agents
        .iter()
        .filter(|(_, a)| a.is_unknown())
        .map(|(agent, _)| agent.as_str())
        .collect();
    format!(
        "how deploy #{} of {name} ended on {} is not known yet (its stream was lost; the agent is away, or still deploying it), so nothing was rolled back: it may be live there. Once the agent reports it, `deployctl history {name}` records its outcome; then roll back",
        h.number,
        agents.join(", ")
    )
}
