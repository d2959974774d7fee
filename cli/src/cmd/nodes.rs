//! `nodes [--env ENV]`: each agent of an env (default: every env the project declares, and
//! the default env): reachable, version, hostname, CPU, memory, disk, load, deployments, and
//! the Python environments (venvs) and artifacts in use and kept unused for later deploys
//! (with their size on disk); then each
//! one's capacity: its memory and what the deployments' memory limits add up to (against
//! `overcommit`), its CPUs and the CPU quotas, its GPUs free of total, and which limits it
//! enforces.
//! Asks all agents at once, each within the timeout; exit 0 only when every agent answered.

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use serde_json::json;

use crate::client::{self, Call, CallError, Limit};
use crate::error::Reported;
use crate::output::{self, Format};
use crate::project::Project;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Below the table, each agent's capacity:
  MEMORY  the node's memory and what the deployments' memory limits add up to (limit ×
          replicas of each one's current release); a deploy whose limits do not fit in
          memory × overcommit (the agent's config) is refused before anything runs
  CPUS    the node's CPUs and the deployments' CPU quotas added up (quotas share the CPUs:
          only one replica asking more than the node has is refused)
  GPUS    whole GPUs free of the node's total, and each GPU
  LIMITS  the limits the node enforces (memory, cpu, pids; by cgroup v1 or v2)
--output json has the same per agent: memory_committed_bytes, cpus_committed, overcommit,
gpus_total, gpus_free, gpus (index, uuid, name, memory_bytes, free), limits_enforced.")]
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
                "artifacts": {
                    "in_use": i.artifacts_in_use, "in_use_bytes": i.artifacts_in_use_bytes,
                    "unused": i.artifacts_unused, "unused_bytes": i.artifacts_unused_bytes,
                },
                "memory_committed_bytes": i.memory_committed_bytes,
                "cpus_committed": i.cpus_committed,
                "overcommit": i.overcommit,
                "gpus_total": i.gpus_total, "gpus_free": i.gpus_free,
                "gpus": i.gpus.iter().map(|g| json!({
                    "index": g.index, "uuid": g.uuid, "name": g.name,
                    "memory_bytes": g.memory_bytes, "free": g.free,
                })).collect::<Vec<_>>(),
                "limits_enforced": i.limits_enforced,
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
                format!(
                    "{} used ({}), {} kept ({})",
                    i.artifacts_in_use,
                    output::bytes(i.artifacts_in_use_bytes),
                    i.artifacts_unused,
                    output::bytes(i.artifacts_unused_bytes)
                ),
            ],
            Err(_) => {
                let mut row = vec![n.env.clone(), n.agent.clone(), "NO".into()];
                row.extend(std::iter::repeat_n("-".to_string(), 9));
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
            "ARTIFACTS",
        ],
        &rows,
    );
    for n in nodes {
        if let Err(e) = &n.info {
            println!("  {}: {e}", n.agent);
        }
    }
    let reachable: Vec<(&Node, &pb::NodeInfoReply)> = nodes
        .iter()
        .filter_map(|n| n.info.as_ref().ok().map(|i| (n, i)))
        .collect();
    if reachable.is_empty() {
        return;
    }
    println!();
    let rows: Vec<Vec<String>> = reachable
        .iter()
        .map(|(n, i)| {
            let mut row = vec![n.agent.clone()];
            row.extend(capacity(i));
            row
        })
        .collect();
    output::table(&["AGENT", "MEMORY", "CPUS", "GPUS", "LIMITS"], &rows);
    for (n, i) in &reachable {
        for g in &i.gpus {
            println!("  {}: {}", n.agent, gpu(g));
        }
    }
}

/// The capacity cells of an agent: memory, CPUs, GPUs, limits enforced.
fn capacity(i: &pb::NodeInfoReply) -> [String; 4] {
    let promised = if i.memory_committed_bytes == 0 {
        "nothing".to_string()
    } else {
        size(i.memory_committed_bytes)
    };
    let memory = format!(
        "mem {} ({promised} promised, overcommit {:?})",
        size(i.memory_total_bytes),
        i.overcommit
    );
    let cpus = format!(
        "{} CPU{} ({} promised)",
        i.cpus,
        if i.cpus == 1 { "" } else { "s" },
        cores(i.cpus_committed)
    );
    let gpus = if i.gpus_total == 0 {
        "no GPUs".to_string()
    } else {
        format!("GPUs {}/{} free", i.gpus_free, i.gpus_total)
    };
    let limits = if i.limits_enforced.is_empty() {
        "-".to_string()
    } else {
        format!("enforced: {}", i.limits_enforced)
    };
    [memory, cpus, gpus, limits]
}

/// "GPU 0 NVIDIA A10, 24 GiB, GPU-…: free" (or "in use").
fn gpu(g: &pb::NodeGpu) -> String {
    format!(
        "GPU {} {}, {}, {}: {}",
        g.index,
        g.name,
        size(g.memory_bytes),
        g.uuid,
        if g.free { "free" } else { "in use" }
    )
}

/// Bytes for people in binary units, as memory is sold: "512 MiB", "1.5 GiB", "24 GiB".
fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
}

/// Cores as written in a limit: "0.5", "2", "1.25" (at most two decimals).
fn cores(c: f64) -> String {
    let text = format!("{c:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn capacity_reads_like_the_issue() {
        let mut i = pb::NodeInfoReply {
            cpus: 8,
            memory_total_bytes: 24 << 30,
            memory_committed_bytes: 8 << 30,
            cpus_committed: 1.5,
            overcommit: 1.0,
            limits_enforced: "memory, cpu, pids (cgroup v1)".into(),
            ..Default::default()
        };
        assert_eq!(
            capacity(&i),
            [
                "mem 24 GiB (8 GiB promised, overcommit 1.0)".to_string(),
                "8 CPUs (1.5 promised)".into(),
                "no GPUs".into(),
                "enforced: memory, cpu, pids (cgroup v1)".into(),
            ]
        );
        i.memory_committed_bytes = 0;
        i.cpus = 1;
        i.cpus_committed = 0.0;
        i.overcommit = 1.25;
        i.gpus_total = 2;
        i.gpus_free = 1;
        let [memory, cpus, gpus, _] = capacity(&i);
        assert_eq!(memory, "mem 24 GiB (nothing promised, overcommit 1.25)");
        assert_eq!(cpus, "1 CPU (0 promised)");
        assert_eq!(gpus, "GPUs 1/2 free");
    }

    #[test]
    fn sizes_and_cores() {
        assert_eq!(size(384 * MIB), "384 MiB");
        assert_eq!(size(1536 * MIB), "1.5 GiB");
        assert_eq!(size(0), "0 B");
        assert_eq!(cores(0.5), "0.5");
        assert_eq!(cores(2.0), "2");
        assert_eq!(cores(0.1 + 0.2), "0.3");
        assert_eq!(
            gpu(&pb::NodeGpu {
                index: 0,
                uuid: "GPU-1".into(),
                name: "NVIDIA A10".into(),
                memory_bytes: 24 << 30,
                free: false,
            }),
            "GPU 0 NVIDIA A10, 24 GiB, GPU-1: in use"
        );
    }
}
