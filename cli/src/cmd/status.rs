//! `status [NAME]`: every instance of a deployment (or of all), asked live from the agents
//! of its env. Exit 0 only when every instance is healthy.

use std::collections::BTreeMap;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use serde_json::json;

use crate::client::{self, Target};
use crate::decl::{self, DeploymentDecl};
use crate::error::Reported;
use crate::output::{self, Format};
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this deployment
    pub name: Option<String>,
    /// Rebuild the state from what the agents report (e.g. after the state file was lost)
    #[arg(long)]
    pub refresh: bool,
}

/// One instance as shown.
struct Instance {
    agent: String,
    state: String,
    s: Option<pb::DeploymentStatus>,
    /// Why there is no live status (agent unreachable, missing there).
    note: String,
}

struct Deployment {
    name: String,
    env: String,
    owner: String,
    instances: Vec<Instance>,
}

pub async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
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

    // Ask every agent of those envs once.
    let mut live: BTreeMap<(String, String), Result<Vec<pb::DeploymentStatus>, String>> =
        BTreeMap::new();
    let mut env_agents: BTreeMap<String, Result<Target, String>> = BTreeMap::new();
    for env in &envs {
        let target = client::resolve_env(project, env).map_err(|e| format!("{e:#}"));
        if let Ok(t) = &target {
            for address in &t.addresses {
                live.insert(
                    (env.clone(), address.clone()),
                    ask(t, address, args.name.as_deref()).await,
                );
            }
        }
        env_agents.insert(env.clone(), target);
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

    if args.refresh {
        refresh(project, &out, format).await?;
    }
    match format {
        Format::Json => print_json(&out),
        Format::Text => print_text(&out, args.name.is_some()),
    }
    let all_healthy = out
        .iter()
        .all(|d| !d.instances.is_empty() && d.instances.iter().all(|i| i.state == "healthy"));
    if all_healthy {
        Ok(())
    } else {
        Err(anyhow!(Reported))
    }
}

/// Status never starts an agent: `target` is used without autostart.
pub async fn ask(
    target: &Target,
    address: &str,
    name: Option<&str>,
) -> Result<Vec<pb::DeploymentStatus>, String> {
    let target = target.no_autostart();
    let mut c = client::connect(&target, address)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let req = pb::StatusRequest {
        name: name.unwrap_or_default().to_string(),
    };
    match c.status(req).await {
        Ok(r) => Ok(r.into_inner().deployments),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(vec![]),
        Err(s) => Err(client::status_text(address, &s)),
    }
}

fn print_json(out: &[Deployment]) {
    let deployments: Vec<_> = out
        .iter()
        .map(|d| {
            let instances: Vec<_> = d
                .instances
                .iter()
                .map(|i| match &i.s {
                    Some(s) => json!({
                        "agent": i.agent, "state": s.state, "release": s.release,
                        "ref": s.git_ref, "commit": s.commit, "pid": s.pid,
                        "restarts": s.restarts, "url": s.url, "uptime_s": s.uptime_s,
                        "cpu_percent": s.cpu_percent, "memory_bytes": s.memory_bytes,
                        "last_health": s.last_health, "message": s.message,
                        "packages_hash": s.packages_hash, "port": s.port,
                        "last_exit_code": if s.last_exit_code >= 0 { json!(s.last_exit_code) } else { json!(null) },
                        "next_restart_in_s": s.next_restart_in_s,
                    }),
                    None => json!({
                        "agent": i.agent, "state": i.state, "release": 0, "ref": "", "commit": "",
                        "pid": 0, "restarts": 0, "url": "", "uptime_s": 0, "cpu_percent": 0.0,
                        "memory_bytes": 0, "message": i.note,
                    }),
                })
                .collect();
            json!({"name": d.name, "owner": d.owner, "env": d.env, "instances": instances})
        })
        .collect();
    println!("{}", json!({ "deployments": deployments }));
}

fn print_text(out: &[Deployment], detail: bool) {
    if out.is_empty() {
        println!("no deployments");
        return;
    }
    let mut rows = Vec::new();
    for d in out {
        for i in &d.instances {
            let row = match &i.s {
                Some(s) => vec![
                    d.name.clone(),
                    d.env.clone(),
                    i.agent.clone(),
                    s.state.clone(),
                    s.release.to_string(),
                    s.git_ref.clone(),
                    s.commit.chars().take(10).collect(),
                    if s.pid > 0 {
                        s.pid.to_string()
                    } else {
                        "-".into()
                    },
                    output::age(s.uptime_s),
                    s.restarts.to_string(),
                    format!("{:.1}%", s.cpu_percent),
                    output::bytes(s.memory_bytes),
                    s.url.clone(),
                ],
                None => vec![
                    d.name.clone(),
                    d.env.clone(),
                    i.agent.clone(),
                    i.state.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
            };
            rows.push(row);
        }
    }
    output::table(
        &[
            "NAME", "ENV", "AGENT", "STATE", "RELEASE", "REF", "COMMIT", "PID", "UPTIME",
            "RESTARTS", "CPU", "MEM", "URL",
        ],
        &rows,
    );
    // Reasons, always for instances that are not healthy, and everything with NAME.
    for d in out {
        for i in &d.instances {
            let (health, message, extra) = match &i.s {
                Some(s) => {
                    let mut extra = Vec::new();
                    if s.last_exit_code >= 0 {
                        extra.push(format!("last exit code {}", s.last_exit_code));
                    }
                    if s.next_restart_in_s > 0 {
                        extra.push(format!("next restart in {}s", s.next_restart_in_s));
                    }
                    if detail && !s.packages_hash.is_empty() {
                        extra.push(format!("packages {}", s.packages_hash));
                    }
                    (s.last_health.clone(), s.message.clone(), extra)
                }
                None => (String::new(), i.note.clone(), vec![]),
            };
            let show = detail || i.state != "healthy";
            if !show {
                continue;
            }
            if !health.is_empty() {
                println!("  {} @ {}: last check: {health}", d.name, i.agent);
            }
            if !message.is_empty() {
                println!("  {} @ {}: {message}", d.name, i.agent);
            }
            if !extra.is_empty() {
                println!("  {} @ {}: {}", d.name, i.agent, extra.join(", "));
            }
        }
    }
}

/// Writes what the agents report into the state: every instance they run, and a
/// deployment (with its declaration as deployed) the state did not know.
async fn refresh(project: &Project, out: &[Deployment], format: Format) -> anyhow::Result<()> {
    let store = state::open(project)?;
    let now = state::now_unix();
    let mut added = 0;
    let mut updated = 0;
    store
        .update(&mut |st| {
            added = 0;
            updated = 0;
            for d in out {
                let live: Vec<&Instance> = d.instances.iter().filter(|i| i.s.is_some()).collect();
                let Some(first) = live.first().and_then(|i| i.s.as_ref()) else {
                    continue;
                };
                if !st.deployments.contains_key(&d.name) {
                    added += 1;
                    let mut declaration =
                        first.spec.as_ref().map(decl::from_spec).unwrap_or_default();
                    if d.env != project.default_env() {
                        declaration.env = Some(d.env.clone());
                    }
                    st.deployments.insert(
                        d.name.clone(),
                        state::DeploymentState {
                            declaration,
                            env: d.env.clone(),
                            owner: first.owner.clone(),
                            ..Default::default()
                        },
                    );
                } else {
                    updated += 1;
                }
                let Some(entry) = st.deployments.get_mut(&d.name) else {
                    continue;
                };
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
            Ok(())
        })
        .await?;
    if format == Format::Text {
        println!(
            "refreshed {}: {added} deployment(s) added, {updated} updated from the agents",
            store.describe()
        );
    }
    Ok(())
}

/// The URL of a healthy instance of `name` (for `apply`).
pub async fn healthy_url(project: &Project, env: &str, name: &str) -> anyhow::Result<String> {
    let target = client::resolve_env(project, env)?;
    let mut seen = Vec::new();
    for address in &target.addresses {
        match ask(&target, address, Some(name)).await {
            Ok(list) => match list.into_iter().find(|s| s.name == name) {
                Some(s) if s.state == "healthy" => return Ok(s.url),
                Some(s) => seen.push(format!("{address}: {}", s.state)),
                None => seen.push(format!("{address}: not running")),
            },
            Err(e) => seen.push(e),
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
