//! `nodes [--env ENV]`: each agent of an env (default: every env the project declares, and
//! the default env): reachable, version, hostname, CPU, memory, disk, load, deployments, and
//! the Python environments (venvs) in use and kept unused for later deploys.
//! Asks all agents at once, each within the timeout; exit 0 only when every agent answered.

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use serde_json::json;

use crate::client::{self, Call, CallError, Limit};
use crate::error::Reported;
use crate::output::{self, Format};
use crate::project::Project;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Only the agents of this env
    #[arg(long)]
    pub env: Option<String>,
}

/// One agent as shown.
struct Node {
    env: String,
    agent: String,
    info: Result<pb::NodeInfoReply, String>,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let envs = match args.env {
        Some(env) => vec![env],
        None => declared_envs(project),
    };
    // Every (env, agent) pair, each agent once, all asked at once.
    let mut agents: Vec<(String, String)> = Vec::new();
    let mut fanout = client::Fanout::default();
    for env in &envs {
        let target = client::resolve_env(project, env)?.no_autostart();
        for address in &target.addresses {
            if !agents.iter().any(|(_, a)| a == address) {
                agents.push((env.clone(), address.clone()));
                fanout.add(&target, address, Limit::Answer, ask);
            }
        }
    }
    let nodes: Vec<Node> = fanout
        .all()
        .await
        .into_iter()
        .map(|r| Node {
            env: agents[r.index].0.clone(),
            agent: r.address,
            info: r.result.map_err(|e| e.message),
        })
        .collect();

    match format {
        Format::Json => print_json(&nodes),
        Format::Text => print_text(&nodes),
    }
    if nodes.iter().all(|n| n.info.is_ok()) {
        Ok(())
    } else {
        // Unreachable agents are in the output already.
        Err(anyhow!(Reported))
    }
}

/// The default env and every `NAME.env.yaml` in the project root, sorted.
pub(crate) fn declared_envs(project: &Project) -> Vec<String> {
    let mut envs = project.declared_envs();
    envs.push(project.default_env());
    envs.sort();
    envs.dedup();
    envs
}

async fn ask(mut c: Call) -> Result<pb::NodeInfoReply, CallError> {
    Ok(c.client
        .node_info(pb::NodeInfoRequest {})
        .await?
        .into_inner())
}

fn print_json(nodes: &[Node]) {
    let list: Vec<_> = nodes
        .iter()
        .map(|n| match &n.info {
            Ok(i) => json!({
                "env": n.env, "agent": n.agent, "reachable": true,
                "version": i.version, "hostname": i.hostname,
                "cpus": i.cpus, "cpu_percent": i.cpu_percent,
                "memory_total_bytes": i.memory_total_bytes, "memory_used_bytes": i.memory_used_bytes,
                "disk_total_bytes": i.disk_total_bytes, "disk_available_bytes": i.disk_available_bytes,
                "load": [i.load_1m, i.load_5m, i.load_15m],
                "deployments": i.deployments, "app_host": i.app_host,
                "data_dir": i.data_dir, "uptime_s": i.uptime_s,
                "venvs": {
                    "in_use": i.venvs_in_use, "unused": i.venvs_unused,
                    "unused_bytes": i.venvs_unused_bytes,
                },
            }),
            Err(e) => json!({
                "env": n.env, "agent": n.agent, "reachable": false, "error": e,
            }),
        })
        .collect();
    println!("{}", json!({ "nodes": list }));
}

fn print_text(nodes: &[Node]) {
    if nodes.is_empty() {
        println!("no agents");
        return;
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| match &n.info {
            Ok(i) => vec![
                n.env.clone(),
                n.agent.clone(),
                "yes".into(),
                i.version.clone(),
                i.hostname.clone(),
                format!("{} x {:.0}%", i.cpus, i.cpu_percent),
                format!(
                    "{} / {}",
                    output::bytes(i.memory_used_bytes),
                    output::bytes(i.memory_total_bytes)
                ),
                format!(
                    "{} free / {}",
                    output::bytes(i.disk_available_bytes),
                    output::bytes(i.disk_total_bytes)
                ),
                format!("{:.2} {:.2} {:.2}", i.load_1m, i.load_5m, i.load_15m),
                i.deployments.to_string(),
                format!(
                    "{} used, {} kept ({})",
                    i.venvs_in_use,
                    i.venvs_unused,
                    output::bytes(i.venvs_unused_bytes)
                ),
            ],
            Err(_) => {
                let mut row = vec![n.env.clone(), n.agent.clone(), "NO".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 8));
                row
            }
        })
        .collect();
    output::table(
        &[
            "ENV",
            "AGENT",
            "REACHABLE",
            "VERSION",
            "HOSTNAME",
            "CPU",
            "MEMORY",
            "DISK",
            "LOAD",
            "DEPLOYMENTS",
            "VENVS",
        ],
        &rows,
    );
    for n in nodes {
        if let Err(e) = &n.info {
            println!("  {}: {e}", n.agent);
        }
    }
}
