//! `status [NAME]`: every instance of a deployment (or of all), asked live from the agents
//! of its env. Exit 0 only when every instance is healthy.

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit};
use crate::error::Reported;
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Only this deployment
    pub name: Option<String>,
    /// Rebuild the state from what the agents keep (e.g. after the state file was lost),
    /// as `deployctl state rebuild` does: each deployment, its owner, declaration as
    /// deployed, instances and the releases the agents keep, numbered as they number them
    #[arg(long)]
    pub refresh: bool,
}

mod gather;
mod lines;
mod print;
mod refresh;
mod scaling;

pub(crate) use refresh::rebuild;

/// One instance as shown.
struct Instance {
    agent: String,
    state: String,
    s: Option<pb::DeploymentStatus>,
    /// Why there is no live status (agent unreachable, missing there).
    note: String,
}

/// An agent that did not answer and shows in no instance.
struct Unanswered {
    env: String,
    agent: String,
    error: String,
}

struct Deployment {
    name: String,
    env: String,
    owner: String,
    instances: Vec<Instance>,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let st = state::open(project)?.load().await?;
    let wanted = gather::select(project, &st, args.name.as_deref())?;
    let asked = gather::ask_all(project, &wanted, args.name.as_deref(), args.refresh, None).await?;
    // Deploys whose result was not known: what the agents recorded is the history now.
    for (name, d) in st.deployments.iter().filter(|(_, d)| d.has_unknown()) {
        if wanted.contains_key(name) {
            let reports = asked.reports(name, &d.env);
            super::fresh::record(project, name, &reports, format).await?;
        }
    }
    let mut out = gather::merge(&st, wanted, &asked, args.name.is_none());
    gather::not_visible(&asked, &st, &mut out).await;
    if let Some(name) = &args.name {
        let known = st.deployments.contains_key(name);
        let running = out
            .iter()
            .flat_map(|d| &d.instances)
            .any(|i| i.s.is_some() || i.state == "unreachable");
        if !known && !running {
            return Err(anyhow!(
                "deployment {name:?} not found (not in the state, not on any agent of its env)"
            ));
        }
    }
    let unanswered = gather::unanswered(project, &asked, &out);
    if args.refresh {
        refresh::refresh(project, &out, format).await?;
    }
    match format {
        Format::Json => print::print_json(&out, &unanswered),
        Format::Text => print::print_text(&out, &unanswered, args.name.is_some()),
    }
    // Another owner's deployment is not the caller's to judge.
    let all_healthy = out
        .iter()
        .filter(|d| args.name.is_some() || !d.instances.iter().all(|i| i.state == "not visible"))
        .all(|d| !d.instances.is_empty() && d.instances.iter().all(|i| serves(&i.state)));
    if all_healthy && unanswered.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(Reported))
    }
}

/// One agent's deployments (`name`: only that one). Never starts an agent: callers
/// use targets without autostart.
/// `with_releases`: with the releases it keeps of each.
async fn ask(
    mut c: Call,
    name: Option<String>,
    with_releases: bool,
) -> Result<Vec<pb::DeploymentStatus>, CallError> {
    let req = pb::StatusRequest {
        name: name.unwrap_or_default(),
        with_releases,
    };
    match c.client.status(req).await {
        Ok(r) => Ok(r.into_inner().deployments),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(vec![]),
        Err(s) => Err(s.into()),
    }
}

/// The URL of a healthy instance of `name` (for `apply`): the first agent that reports
/// one; the others are not waited for.
pub(crate) async fn healthy_url(
    project: &Project,
    env: &str,
    name: &str,
) -> anyhow::Result<String> {
    let target = client::resolve_env(project, env)?.no_autostart();
    let wanted = Some(name.to_string());
    let mut replies = client::for_each_agent(&target, Limit::Answer, move |c| {
        ask(c, wanted.clone(), false)
    });
    let mut seen = Vec::new();
    while let Some(reply) = replies.next().await {
        let address = reply.address;
        match reply.result {
            Ok(list) => match list.into_iter().find(|s| s.name == name) {
                Some(s) if serves(&s.state) => return Ok(s.url),
                Some(s) => seen.push(format!("{address}: {}", s.state)),
                // Also what another owner's deployment looks like: nothing of it is told.
                None => seen.push(format!("{address}: not found")),
            },
            Err(e) => seen.push(e.message),
        }
    }
    Err(anyhow!(
        "no healthy instance of {name} ({})",
        if seen.is_empty() {
            "no agents".to_string()
        } else {
            seen.join("; ")
        }
    ))
}

/// Whether a deployment in `state` serves: healthy, or sleeping (a request wakes it).
pub(crate) fn serves(state: &str) -> bool {
    matches!(state, "healthy" | "sleeping" | "waking")
}
