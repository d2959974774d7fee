//! `status` in phases: which deployments on which envs ([`select`]), every agent of those
//! envs asked at once ([`ask_all`]), their answers merged into one row per deployment and
//! instance ([`merge`]), and the agents that answered nothing shown in no row
//! ([`unanswered`]).

use std::collections::BTreeMap;

use deployctl_proto::v1 as pb;

use super::{ask, Deployment, Instance, Unanswered};
use crate::client::{self, Limit, Target};
use crate::decl::{self, DeploymentDecl};
use crate::project::Project;
use crate::state::State;

/// What the agents said: each env's agents (or why it has none), and each agent's answer.
pub(super) struct Asked {
    envs: BTreeMap<String, Result<Target, String>>,
    live: BTreeMap<(String, String), Result<Vec<pb::DeploymentStatus>, String>>,
}

impl Asked {
    /// What each agent of `env` said of `name` (for reconciling its history): its status
    /// (`None`: it does not have it), or why it did not answer.
    pub(super) fn reports(
        &self,
        name: &str,
        env: &str,
    ) -> Vec<(String, crate::cmd::fresh::Report)> {
        self.live
            .iter()
            .filter(|((e, _), _)| e == env)
            .map(|((_, agent), reply)| {
                let report = match reply {
                    Ok(list) => Ok(list.iter().find(|s| s.name == name).cloned()),
                    Err(e) => Err(e.clone()),
                };
                (agent.clone(), report)
            })
            .collect()
    }
}

/// The deployments to show, each with its env: `name` alone, or all in the state.
pub(super) fn select(
    project: &Project,
    st: &State,
    name: Option<&str>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut wanted = BTreeMap::new();
    match name {
        Some(name) => {
            decl::validate_name("name", name)?;
            let env = match st.deployments.get(name) {
                Some(d) => d.env.clone(),
                None => decl::load::<DeploymentDecl>(&project.deployment_file(name))?
                    .and_then(|d| d.env)
                    .unwrap_or_else(|| project.default_env()),
            };
            wanted.insert(name.to_string(), env);
        }
        None => {
            for (name, d) in &st.deployments {
                wanted.insert(name.clone(), d.env.clone());
            }
        }
    }
    Ok(wanted)
}

/// Asks every agent of the wanted deployments' envs (and, for all deployments, of every
/// declared env: deployments the state does not know are found there) at once, each
/// within the timeout (`with_releases`: asking for the releases they keep too; `only_env`:
/// the agents of that env alone). Never starts the local agent.
pub(super) async fn ask_all(
    project: &Project,
    wanted: &BTreeMap<String, String>,
    name: Option<&str>,
    with_releases: bool,
    only_env: Option<&str>,
) -> anyhow::Result<Asked> {
    let mut envs: Vec<String> = wanted.values().cloned().collect();
    envs.extend(only_env.map(str::to_string));
    if name.is_none() && only_env.is_none() {
        envs.push(project.default_env());
        envs.extend(project.declared_envs());
    }
    envs.sort();
    envs.dedup();
    let mut env_agents = BTreeMap::new();
    let mut asked: Vec<(String, String)> = Vec::new();
    let mut fanout = client::Fanout::default();
    for env in &envs {
        let target = match client::resolve_env(project, env).map(|t| t.no_autostart()) {
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
            let name = name.map(str::to_string);
            fanout.add(&target, address, Limit::Answer, move |c| {
                ask(c, name, with_releases)
            });
        }
        env_agents.insert(env.clone(), Ok(target));
    }
    let mut live = BTreeMap::new();
    for reply in fanout.all().await {
        let (env, address) = asked[reply.index].clone();
        live.insert((env, address), reply.result.map_err(|e| e.message));
    }
    Ok(Asked {
        envs: env_agents,
        live,
    })
}

/// One row per deployment (with `all`, also those the agents run that the state does not
/// know, e.g. after a lost state file), one instance per agent of its env.
pub(super) fn merge(
    st: &State,
    wanted: BTreeMap<String, String>,
    asked: &Asked,
    all: bool,
) -> Vec<Deployment> {
    let mut names: Vec<(String, String)> = wanted.into_iter().collect();
    if all {
        for ((env, _), reply) in &asked.live {
            for s in reply.iter().flatten() {
                if !names.iter().any(|(n, _)| n == &s.name) {
                    names.push((s.name.clone(), env.clone()));
                }
            }
        }
    }
    names
        .into_iter()
        .map(|(name, env)| {
            let instances = instances(asked, &name, &env);
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
            Deployment {
                name,
                env,
                owner,
                instances,
            }
        })
        .collect()
}

/// `name` on each agent of `env`: its status, missing there, or the agent unreachable.
fn instances(asked: &Asked, name: &str, env: &str) -> Vec<Instance> {
    let instance =
        |agent: &str, state: &str, s: Option<&pb::DeploymentStatus>, note: &str| Instance {
            agent: agent.to_string(),
            state: state.to_string(),
            s: s.cloned(),
            note: note.to_string(),
        };
    match asked.envs.get(env) {
        Some(Ok(t)) => t
            .addresses
            .iter()
            .filter_map(|address| {
                let reply = asked.live.get(&(env.to_string(), address.clone()))?;
                Some(match reply {
                    Ok(list) => match list.iter().find(|s| s.name == name) {
                        Some(s) => instance(address, &s.state, Some(s), ""),
                        None => instance(address, "missing", None, "the agent does not run it"),
                    },
                    Err(e) => instance(address, "unreachable", None, e),
                })
            })
            .collect(),
        Some(Err(e)) => vec![instance("-", "unknown", None, e)],
        None => Vec::new(),
    }
}

/// Agents of declared envs that gave no answer and are in no row: named too, since they may
/// run deployments nobody can see now. (The built-in local agent not running is normal
/// while another agent answers; when none does, that is the news.)
pub(super) fn unanswered(project: &Project, asked: &Asked, out: &[Deployment]) -> Vec<Unanswered> {
    let live = &asked.live;
    let none_answered = !live.is_empty() && live.values().all(|r| r.is_err());
    live.iter()
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
        .collect()
}

/// Instances "missing" from an agent that hides them from this caller: another owner's
/// deployment in the shared state is shown as not visible (with its owner), never as not
/// running.
pub(super) async fn not_visible(asked: &Asked, st: &State, out: &mut [Deployment]) {
    let mut callers: BTreeMap<String, Option<pb::WhoAmIReply>> = BTreeMap::new();
    for d in out.iter_mut() {
        let Some(owner) = st.deployments.get(&d.name).map(|e| e.owner.clone()) else {
            continue;
        };
        if !d.instances.iter().any(|i| i.state == "missing") {
            continue;
        }
        if !callers.contains_key(&d.env) {
            let me = match asked.envs.get(&d.env) {
                Some(Ok(t)) => client::who_am_i(t).await,
                _ => None,
            };
            callers.insert(d.env.clone(), me);
        }
        let Some(Some(me)) = callers.get(&d.env) else {
            continue;
        };
        if client::may_touch(me, &owner) {
            continue;
        }
        for i in d.instances.iter_mut().filter(|i| i.state == "missing") {
            i.state = "not visible".into();
            i.note = format!("not visible to you (owner {owner})");
        }
    }
}
