//! `status --refresh` and `state rebuild [--env ENV]`: the state rebuilt from what the
//! agents keep ([`state::rebuild`]): each deployment they run, its owner, declaration as
//! deployed, instances, and every release the agents keep (with the spec each was deployed
//! with), numbered as they number them, so `history`, `rollback` and `env set` work as
//! before the state was lost. Nothing that runs is touched; nothing the state has is lost.

use serde_json::json;

use super::{gather, Deployment};
use crate::client;
use crate::error::Reported;
use crate::output::Format;
use crate::project::Project;
use crate::state::{self, rebuild::Rebuilt, rebuild::Report};

/// `state rebuild [--env ENV]`: every deployment the agents of the project's envs (`env`:
/// of that env only) run, rebuilt into the state.
pub(crate) async fn rebuild(
    project: &Project,
    env: Option<&str>,
    format: Format,
) -> anyhow::Result<()> {
    if let Some(env) = env {
        // A typo is bad input, before anything is asked.
        client::resolve_env(project, env)?;
    }
    let st = state::open(project)?.load().await?;
    let mut wanted = gather::select(project, &st, None)?;
    if let Some(env) = env {
        wanted.retain(|_, e| e == env);
    }
    let asked = gather::ask_all(project, &wanted, None, true, env).await?;
    let mut out = gather::merge(&st, wanted, &asked, true);
    if let Some(env) = env {
        out.retain(|d| d.env == env);
    }
    let (at, done) = apply(project, &out).await?;
    // Agents that did not answer: what they keep is not in it.
    let mut away: Vec<(String, String)> = out
        .iter()
        .flat_map(|d| &d.instances)
        .filter(|i| i.state == "unreachable")
        .map(|i| (i.agent.clone(), i.note.clone()))
        .collect();
    let unanswered = gather::unanswered(project, &asked, &out);
    let unanswered = unanswered
        .into_iter()
        .filter(|u| env.is_none_or(|e| u.env == e));
    away.extend(unanswered.map(|u| (u.agent, u.error)));
    away.sort();
    away.dedup_by(|a, b| a.0 == b.0);
    print(&at, &done, &away, format);
    match away.is_empty() {
        true => Ok(()),
        false => Err(anyhow::anyhow!(Reported)),
    }
}

/// `status --refresh`: as `state rebuild` for the deployments shown; in text, what it
/// did is said before the status (JSON prints the status alone).
pub(super) async fn refresh(
    project: &Project,
    out: &[Deployment],
    format: Format,
) -> anyhow::Result<()> {
    let (at, done) = apply(project, out).await?;
    if format == Format::Text {
        print(&at, &done, &[], format);
    }
    Ok(())
}

/// Writes what the agents keep of each deployment in `out` into the state (one locked
/// read-modify-write): where it is, and what it did per deployment.
async fn apply(project: &Project, out: &[Deployment]) -> anyhow::Result<(String, Vec<Rebuilt>)> {
    let store = state::open(project)?;
    let now = state::now_unix();
    let default_env = project.default_env();
    let mut done: Vec<Rebuilt> = Vec::new();
    store
        .update(&mut |st| {
            done.clear();
            for d in out {
                let reports = reports(d);
                let declared = (d.env != default_env).then_some(d.env.as_str());
                done.extend(state::rebuild::rebuild(
                    st, &d.name, &d.env, declared, &reports, now,
                ));
            }
            Ok(())
        })
        .await?;
    Ok((store.describe(), done))
}

/// What was done, per deployment, and which agents did not answer (`away`: each with why).
fn print(at: &str, done: &[Rebuilt], away: &[(String, String)], format: Format) {
    let added = done.iter().filter(|r| r.added).count();
    let updated = done.len() - added;
    if format == Format::Json {
        let list: Vec<_> = done
            .iter()
            .map(|r| {
                json!({"name": r.name, "added": r.added, "releases_added": r.numbers,
                       "agents": r.agents, "current": r.current, "what": r.lines})
            })
            .collect();
        println!(
            "{}",
            json!({"state": at, "added": added, "updated": updated, "deployments": list,
                   "not_answered": away.iter().map(|(a, e)| json!({"agent": a, "error": e})).collect::<Vec<_>>()})
        );
        return;
    }
    println!("rebuilt {at} from the agents: {added} deployment(s) added, {updated} updated");
    for line in done.iter().flat_map(|r| &r.lines) {
        println!("{line}");
    }
    for (agent, error) in away {
        println!("{agent} did not answer ({error}): what it keeps is not in the state; run `deployctl state rebuild` again when it answers");
    }
}

/// Each agent of its env that answered: what it reports of `d` (`None`: it does not run
/// it). Agents that did not answer, or hide it from the caller, say nothing.
fn reports(d: &Deployment) -> Vec<Report<'_>> {
    d.instances
        .iter()
        .filter_map(|i| match (&i.s, i.state.as_str()) {
            (Some(s), _) => Some(Report {
                agent: &i.agent,
                status: Some(s),
            }),
            (None, "missing") => Some(Report {
                agent: &i.agent,
                status: None,
            }),
            _ => None,
        })
        .collect()
}
