//! `nodes [--env ENV]`: each agent of an env (default: every env the project declares, and
//! the default env): reachable, version, hostname, CPU, memory, disk, load, deployments.
//! Asks all agents at once; exit 0 only when every agent answered.

use std::time::Duration;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use serde_json::json;

use crate::client::{self, Target};
use crate::error::Reported;
use crate::output::{self, Format};
use crate::project::Project;

/// How long one agent may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct Args {
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

pub async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let envs = match args.env {
        Some(env) => vec![env],
        None => declared_envs(project),
    };
    // Every (env, agent) pair, each agent once.
    let mut agents: Vec<(String, String, Target)> = Vec::new();
    for env in &envs {
        let target = client::resolve_env(project, env)?.no_autostart();
        for address in &target.addresses {
            if !agents.iter().any(|(_, a, _)| a == address) {
                agents.push((env.clone(), address.clone(), target.clone()));
            }
        }
    }
    let asks = agents.into_iter().map(|(env, agent, target)| async move {
        let info = ask(&target, &agent).await;
        Node { env, agent, info }
    });
    let nodes: Vec<Node> = join_all(asks).await;

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
fn declared_envs(project: &Project) -> Vec<String> {
    let mut envs = project.declared_envs();
    envs.push(project.default_env());
    envs.sort();
    envs.dedup();
    envs
}

/// Runs the futures concurrently and keeps their order.
async fn join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

/// Never starts an agent (`target` comes without autostart): asking must not create one.
async fn ask(target: &Target, address: &str) -> Result<pb::NodeInfoReply, String> {
    let call = async {
        let mut c = client::connect(target, address)
            .await
            .map_err(|e| format!("{e:#}"))?;
        c.node_info(pb::NodeInfoRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| client::status_text(address, &s))
    };
    tokio::time::timeout(ASK_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "agent {address} did not answer within {ASK_TIMEOUT:?}"
            ))
        })
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
            ],
            Err(_) => {
                let mut row = vec![n.env.clone(), n.agent.clone(), "NO".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 7));
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
        ],
        &rows,
    );
    for n in nodes {
        if let Err(e) = &n.info {
            println!("  {}: {e}", n.agent);
        }
    }
}
