//! `status [NAME]`: every instance of a deployment (or of all), asked live from the agents
//! of its env. Exit 0 only when every instance is healthy.

use std::collections::BTreeMap;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit, Target};
use crate::decl::{self, DeploymentDecl};
use crate::error::Reported;
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Only this deployment
    pub name: Option<String>,
    /// Rebuild the state from what the agents report (e.g. after the state file was lost)
    #[arg(long)]
    pub refresh: bool,
}

mod lines;
mod print;
mod refresh;

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
    // Which deployments, on which env.
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    match &args.name {
        Some(name) => {
            decl::validate_name("name", name)?;
            let env = match st.deployments.get(name) {
                Some(d) => d.env.clone(),
                None => decl::load::<DeploymentDecl>(&project.deployment_file(name))?
                    .and_then(|d| d.env)
                    .unwrap_or_else(|| project.default_env()),
            };
            wanted.insert(name.clone(), env);
        }
        None => {
            for (name, d) in &st.deployments {
                wanted.insert(name.clone(), d.env.clone());
            }
        }
    }
    let mut envs: Vec<String> = wanted.values().cloned().collect();
    if args.name.is_none() {
        // Every declared env too: deployments the state does not know are found there.
        envs.push(project.default_env());
        envs.extend(project.declared_envs());
    }
    envs.sort();
    envs.dedup();

    // Ask every agent of those envs at once, each within the timeout.
    let mut env_agents: BTreeMap<String, Result<Target, String>> = BTreeMap::new();
    let mut asked: Vec<(String, String)> = Vec::new();
    let mut fanout = client::Fanout::default();
    for env in &envs {
        let target = client::resolve_env(project, env).map(|t| t.no_autostart());
        let target = match target {
            Ok(t) => t,
            // The declared env of a deployment shown is wrong (e.g. a token over plain
            // http:// to another machine): bad input, before anything is sent.
            Err(e)
                if crate::error::exit_code(&e) == 2
                    && project.env_file(env).is_file()
                    && wanted.values().any(|w| w == env) =>
            {
                return Err(e)
            }
            Err(e) => {
                env_agents.insert(env.clone(), Err(format!("{e:#}")));
                continue;
            }
        };
        for address in &target.addresses {
            asked.push((env.clone(), address.clone()));
            let name = args.name.clone();
            fanout.add(&target, address, Limit::Answer, move |c| ask(c, name));
        }
        env_agents.insert(env.clone(), Ok(target));
    }
    let mut live: BTreeMap<(String, String), Result<Vec<pb::DeploymentStatus>, String>> =
        BTreeMap::new();
    for reply in fanout.all().await {
        let (env, address) = asked[reply.index].clone();
        live.insert((env, address), reply.result.map_err(|e| e.message));
    }

    let mut out: Vec<Deployment> = Vec::new();
    let mut names: Vec<(String, String)> = wanted.into_iter().collect();
    // Deployments the agents run that the state does not know (e.g. a lost state file).
    if args.name.is_none() {
        for ((env, _), reply) in &live {
            for s in reply.iter().flatten() {
                if !names.iter().any(|(n, _)| n == &s.name) {
                    names.push((s.name.clone(), env.clone()));
                }
            }
        }
    }
    for (name, env) in names {
        let mut instances = Vec::new();
        match env_agents.get(&env) {
            Some(Ok(t)) => {
                for address in &t.addresses {
                    let inst = match live.get(&(env.clone(), address.clone())) {
                        Some(Ok(list)) => match list.iter().find(|s| s.name == name) {
                            Some(s) => Instance {
                                agent: address.clone(),
                                state: s.state.clone(),
                                s: Some(s.clone()),
                                note: String::new(),
                            },
                            None => Instance {
                                agent: address.clone(),
                                state: "missing".into(),
                                s: None,
                                note: "the agent does not run it".into(),
                            },
                        },
                        Some(Err(e)) => Instance {
                            agent: address.clone(),
                            state: "unreachable".into(),
                            s: None,
                            note: e.clone(),
                        },
                        None => continue,
                    };
                    instances.push(inst);
                }
            }
            Some(Err(e)) => instances.push(Instance {
                agent: "-".into(),
                state: "unknown".into(),
                s: None,
                note: e.clone(),
            }),
            None => {}
        }
        let owner = st
            .deployments
            .get(&name)
            .map(|d| d.owner.clone())
            .or_else(|| {
                instances
                    .iter()
                    .find_map(|i| i.s.as_ref().map(|s| s.owner.clone()))
            })
            .unwrap_or_default();
        out.push(Deployment {
            name,
            env,
            owner,
            instances,
        });
    }

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

    // Agents of declared envs that gave no answer and are in no row above: named too, since
    // they may run deployments nobody can see now. (The built-in local agent not running
    // is normal while another agent answers; when none does, that is the news.)
    let none_answered = !live.is_empty() && live.values().all(|r| r.is_err());
    let unanswered: Vec<Unanswered> = live
        .iter()
        .filter(|((env, _), _)| none_answered || project.env_file(env).is_file())
        .filter_map(|((env, agent), reply)| {
            let error = reply.as_ref().err()?;
            let shown = out
                .iter()
                .flat_map(|d| &d.instances)
                .any(|i| &i.agent == agent);
            (!shown).then(|| Unanswered {
                env: env.clone(),
                agent: agent.clone(),
                error: error.clone(),
            })
        })
        .collect();

    if args.refresh {
        refresh::refresh(project, &out, format).await?;
    }
    match format {
        Format::Json => print::print_json(&out, &unanswered),
        Format::Text => print::print_text(&out, &unanswered, args.name.is_some()),
    }
    let all_healthy = out
        .iter()
        .all(|d| !d.instances.is_empty() && d.instances.iter().all(|i| i.state == "healthy"));
    if all_healthy && unanswered.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(Reported))
    }
}

/// One agent's deployments (`name`: only that one). Never starts an agent: callers
/// use targets without autostart.
async fn ask(mut c: Call, name: Option<String>) -> Result<Vec<pb::DeploymentStatus>, CallError> {
    let req = pb::StatusRequest {
        name: name.unwrap_or_default(),
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
    let mut replies =
        client::for_each_agent(&target, Limit::Answer, move |c| ask(c, wanted.clone()));
    let mut seen = Vec::new();
    while let Some(reply) = replies.next().await {
        let address = reply.address;
        match reply.result {
            Ok(list) => match list.into_iter().find(|s| s.name == name) {
                Some(s) if s.state == "healthy" => return Ok(s.url),
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
