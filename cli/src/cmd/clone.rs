//! `clone NAME NEW_NAME [--owner OWNER]`: deploy a copy of a deployment under a new name
//! and owner — how ownership moves to a group. Refuses, naming each, when the new owner
//! lacks a secret or a git credential the deployment uses. A copy that would listen on a
//! port a deployment already holds on the env's agents (the original's, by default) is
//! refused before anything is deployed, naming a free port; `--port auto` takes that one.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use super::run::{self, How};
use crate::client::{self, Call, CallError, Limit, Target};
use crate::decl::{self, DeploymentDecl};
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    pub name: String,
    pub new_name: String,
    /// The new deployment's owner, e.g. group:ml [default: the same owner]
    #[arg(long)]
    pub owner: Option<String>,
    /// The copy's port, or `auto`: the first one from the original's up that no deployment
    /// holds on the env's agents. Needed when the copy runs beside the original on the same
    /// agents [default: the original's]
    #[arg(long, allow_negative_numbers = true, value_parser = parse_port, value_name = "PORT|auto")]
    pub port: Option<PortArg>,
}

/// `--port`: a number (checked like `run --port`, by the declaration) or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortArg {
    Auto,
    Number(i64),
}

fn parse_port(s: &str) -> Result<PortArg, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(PortArg::Auto);
    }
    s.trim()
        .parse::<i64>()
        .map(PortArg::Number)
        .map_err(|_| format!("{s:?} is not a port: give a number (e.g. 8001) or auto"))
}

/// The port an app gets when its declaration names none (the agent's default).
const DEFAULT_PORT: i64 = 8000;

/// `clone` in phases: the original found and the new name checked, the copy made (owner,
/// port), its port checked against what the env's agents hold, what the new owner lacks
/// refused, then the copy deployed as a new deployment.
pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("NAME", &args.name)?;
    decl::validate_name("NEW_NAME", &args.new_name)?;
    // Until the copy's declaration is written: no other command of this project makes it.
    let _lock = decl::lock::lock(project, &args.new_name)?;
    let st = state::open(project)?.load().await?;
    let (source, source_owner) = original(project, &st, &args.name)?;
    refuse_taken_name(project, &st, &args.new_name)?;
    let mut copy = source.clone();
    if let Some(o) = &args.owner {
        copy.owner = Some(o.clone());
    }
    if let Some(PortArg::Number(port)) = args.port {
        copy.port = Some(port);
    }
    copy.validate(&args.new_name)?;
    let env = copy.env.clone().unwrap_or_else(|| project.default_env());
    let target = client::resolve_env(project, &env)?;
    // Before anything is deployed: the agents would refuse a port another deployment holds
    // ("port in use"), and the original holds its own on the same agents.
    let held = held_ports(&target, &st, &env).await;
    let from = source.port.unwrap_or(DEFAULT_PORT);
    choose_port(&mut copy, &args, &held, from, &env, format)?;
    let new_owner = super::secret::owner_or_caller(&target, copy.owner.clone()).await?;
    refuse_lacking(&target, &copy, &source_owner, &new_owner, &args.name).await?;
    if format == Format::Text {
        println!(
            "Cloning {} as {} owned by {new_owner}",
            args.name, args.new_name
        );
    }
    deploy_copy(project, &args, &env, copy, format).await
}

/// The original's declaration and owner: the state's, or else its declaration file's.
fn original(
    project: &Project,
    st: &state::State,
    name: &str,
) -> anyhow::Result<(DeploymentDecl, String)> {
    Ok(match st.deployments.get(name) {
        Some(d) => (d.declaration.clone(), d.owner.clone()),
        None => match decl::load::<DeploymentDecl>(&project.deployment_file(name))? {
            Some(d) => {
                let o = d.owner.clone().unwrap_or_default();
                (d, o)
            }
            None => {
                return Err(anyhow!(
                    "deployment {:?} not found (not in the state, no declaration)",
                    name
                ))
            }
        },
    })
}

/// Refuses a new name the state or a declaration already has.
fn refuse_taken_name(project: &Project, st: &state::State, new_name: &str) -> anyhow::Result<()> {
    if project.deployment_file(new_name).exists() || st.deployments.contains_key(new_name) {
        return Err(crate::error::bad_input(format!(
            "NEW_NAME: {:?} exists already; pick a new name",
            new_name
        )));
    }
    Ok(())
}

/// The copy's port: with `--port auto` the first one `from` up that no deployment holds
/// (said when it is not the one asked for); otherwise one another deployment holds on the
/// env's agents is refused, naming a free one.
fn choose_port(
    copy: &mut DeploymentDecl,
    args: &Args,
    held: &BTreeMap<i64, BTreeSet<String>>,
    from: i64,
    env: &str,
    format: Format,
) -> anyhow::Result<()> {
    let wanted = copy.port.unwrap_or(DEFAULT_PORT);
    let free = || free_port(held, from);
    if args.port == Some(PortArg::Auto) {
        let port = free().ok_or_else(|| anyhow!("no free port above {wanted} in env {env}"))?;
        copy.port = Some(port);
        copy.validate(&args.new_name)?;
        if format == Format::Text && port != wanted {
            println!(
                "Port {port} for {} ({wanted} is held by {})",
                args.new_name,
                holders(held, wanted)
            );
        }
    } else if held.contains_key(&wanted) {
        let suggestion = free()
            .map(|p| format!("clone with --port {p} (free on env {env}'s agents), or --port auto"))
            .unwrap_or_else(|| "clone with --port PORT".to_string());
        let flag = if args.port.is_some() {
            "--port"
        } else {
            "the original's port"
        };
        return Err(crate::error::bad_input(format!(
            "{} would listen on port {wanted} ({flag}), which {} holds on env {env}'s agents, so they would refuse it (port in use): {suggestion}",
            args.new_name,
            holders(held, wanted)
        )));
    }
    Ok(())
}

/// Refuses a copy whose new owner lacks a secret or a git credential the deployment uses,
/// naming each.
async fn refuse_lacking(
    target: &Target,
    copy: &DeploymentDecl,
    old_owner: &str,
    new_owner: &str,
    name: &str,
) -> anyhow::Result<()> {
    let missing = missing_for(target, copy, old_owner, new_owner).await?;
    if !missing.is_empty() {
        return Err(anyhow!(
            "{new_owner} cannot run a copy of {}: it lacks {}. Add them with `deployctl secret set --owner {new_owner} NAME`, then clone again",
            name,
            missing.join(", ")
        ));
    }
    Ok(())
}

/// Deploys the copy as a new deployment (its declaration written back); one made
/// meanwhile from elsewhere under the new name is not deployed over.
async fn deploy_copy(
    project: &Project,
    args: &Args,
    env: &str,
    copy: DeploymentDecl,
    format: Format,
) -> anyhow::Result<()> {
    let how = How {
        format,
        write_back: true,
        note: format!("clone of {}", args.name),
        // What it copies was deployed with its artifacts as they are.
        allow_unpinned: true,
        ..Default::default()
    };
    let new = &args.new_name;
    // Made meanwhile from elsewhere: a clone does not deploy over it.
    let taken = format!(
        "{new} was made on env {env} meanwhile (see above), so nothing was cloned there; pick another name, or `deployctl status {new}`"
    );
    let prepare = |_: &super::fresh::Fresh| {
        let (d, how) = (copy.clone(), how.clone());
        Ok(Some(run::Change {
            d,
            existing: None,
            how,
        }))
    };
    run::deploy_change(
        project,
        new,
        env,
        format,
        run::OnStale::Refuse(taken),
        prepare,
    )
    .await?
    .result
}

/// What the new owner lacks on some agent, once each; an agent that does not answer
/// stops the clone (it could not be checked).
async fn missing_for(
    target: &Target,
    d: &DeploymentDecl,
    old_owner: &str,
    new_owner: &str,
) -> anyhow::Result<Vec<String>> {
    let (lacks, unreachable) =
        super::check::secrets::lacking(&target.no_autostart(), d, old_owner, new_owner).await;
    if let Some((_, why)) = unreachable.into_iter().next() {
        return Err(anyhow!(why));
    }
    let mut missing: Vec<String> = Vec::new();
    for l in lacks {
        if !missing.contains(&l.item) {
            missing.push(l.item);
        }
    }
    Ok(missing)
}

/// The ports deployments hold on the env's agents (what each agent shows the caller), and
/// those the state records in the env: port → the deployments holding it. An agent that
/// does not answer adds nothing (the secrets check names it).
async fn held_ports(
    target: &Target,
    st: &state::State,
    env: &str,
) -> BTreeMap<i64, BTreeSet<String>> {
    let mut held: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for (name, d) in &st.deployments {
        if d.env == env && !d.instances.is_empty() {
            let port = d.declaration.port.unwrap_or(DEFAULT_PORT);
            held.entry(port).or_default().insert(name.clone());
        }
    }
    let replies = client::for_each_agent(&target.no_autostart(), Limit::Answer, ask)
        .all()
        .await;
    for reply in replies {
        for d in reply.result.unwrap_or_default() {
            let port = if d.port == 0 {
                DEFAULT_PORT
            } else {
                i64::from(d.port)
            };
            held.entry(port).or_default().insert(d.name);
        }
    }
    held
}

/// One agent's deployments.
async fn ask(mut c: Call) -> Result<Vec<pb::DeploymentStatus>, CallError> {
    match c.client.status(pb::StatusRequest::default()).await {
        Ok(r) => Ok(r.into_inner().deployments),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(vec![]),
        Err(s) => Err(s.into()),
    }
}

/// The first port from `from` up that no deployment holds.
fn free_port(held: &BTreeMap<i64, BTreeSet<String>>, from: i64) -> Option<i64> {
    (from.max(1024)..=65535).find(|p| !held.contains_key(p))
}

fn holders(held: &BTreeMap<i64, BTreeSet<String>>, port: i64) -> String {
    let names: Vec<String> = held
        .get(&port)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    match names.as_slice() {
        [] => "nothing".to_string(),
        [one] => format!("deployment {one}"),
        _ => format!("deployments {}", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_argument_and_the_free_port() {
        assert_eq!(parse_port("auto"), Ok(PortArg::Auto));
        assert_eq!(parse_port("8001"), Ok(PortArg::Number(8001)));
        assert!(parse_port("eighty").unwrap_err().contains("or auto"));
        let mut held = BTreeMap::new();
        for (p, n) in [(8000, "iris"), (8001, "web"), (8003, "db")] {
            held.entry(p)
                .or_insert_with(BTreeSet::new)
                .insert(n.to_string());
        }
        assert_eq!(free_port(&held, 8000), Some(8002));
        assert_eq!(free_port(&held, 9000), Some(9000));
        assert_eq!(holders(&held, 8000), "deployment iris");
    }
}
