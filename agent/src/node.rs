//! What this node is, for `deployctl nodes`: version, hostname and resources (sysinfo),
//! and its capacity: what the deployments' limits add up to (as the deploy preflight
//! counts them), the GPUs free and held, and which limits the node enforces.

use std::collections::HashSet;
use std::sync::Arc;

use deployctl_proto::v1::{NodeGpu, NodeInfoReply};
use sysinfo::{Disks, System};

use crate::spec::Resources;
use crate::supervisor::{hostname, Supervisor};

/// The node's facts and load (read on a blocking thread: /proc, the disks). `deployments`:
/// how many the caller may see.
pub(crate) async fn info(sup: Arc<Supervisor>, deployments: u32) -> NodeInfoReply {
    tokio::task::spawn_blocking(move || info_blocking(&sup, deployments))
        .await
        .unwrap_or_default()
}

fn info_blocking(sup: &Supervisor, deployments: u32) -> NodeInfoReply {
    let mut sys = System::new().ok();
    if let Some(sys) = sys.as_mut() {
        sys.refresh_memory();
        sys.refresh_cpu_usage();
    }
    let load = System::load_average().ok();
    let disks = Disks::new_with_refreshed_list().ok();
    // The disk holding the data directory: the longest mount point that prefixes it.
    let data_dir = sup
        .config()
        .data_dir
        .canonicalize()
        .unwrap_or(sup.config().data_dir.clone());
    let disk = disks
        .iter()
        .flat_map(|d| d.iter())
        .filter(|d| data_dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len());
    let venvs = sup.venvs().summary();
    let artifacts = sup.artifacts().summary();
    // Each deployment's current release, with as many replicas as run now.
    let releases: Vec<_> = sup
        .registry()
        .all()
        .iter()
        // A sleeping or stopped deployment runs none: it promises nothing (as the deploy's
        // room check counts it).
        .filter_map(|d| {
            let running = d.running_count();
            d.current().filter(|_| running > 0).map(|r| (r, running))
        })
        .collect();
    let (memory_committed_bytes, cpus_committed) = promised(
        releases
            .iter()
            .map(|(rel, running)| (&rel.spec.resources, *running)),
    );
    let (gpus_total, gpus_free, gpus) = {
        let pool = sup.gpu_pool();
        // Only whether each GPU is held: who holds it is not the caller's to know.
        let held: HashSet<String> = pool
            .holders()
            .into_values()
            .flatten()
            .map(|g| g.uuid)
            .collect();
        let gpus = pool
            .gpus()
            .iter()
            .map(|g| NodeGpu {
                index: g.index,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                memory_bytes: g.memory_bytes,
                free: !held.contains(&g.uuid),
            })
            .collect();
        (pool.total(), pool.free(), gpus)
    };
    NodeInfoReply {
        version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: hostname(),
        cpus: sys.as_ref().map(|s| s.cpus().len() as u32).unwrap_or(0),
        cpu_percent: sys.as_ref().map(|s| s.global_cpu_usage()).unwrap_or(0.0),
        memory_total_bytes: sys.as_ref().map(|s| s.total_memory()).unwrap_or(0),
        memory_used_bytes: sys.as_ref().map(|s| s.used_memory()).unwrap_or(0),
        disk_total_bytes: disk.map(|d| d.total_space()).unwrap_or(0),
        disk_available_bytes: disk.map(|d| d.available_space()).unwrap_or(0),
        load_1m: load.as_ref().map(|l| l.one).unwrap_or(0.0),
        load_5m: load.as_ref().map(|l| l.five).unwrap_or(0.0),
        load_15m: load.as_ref().map(|l| l.fifteen).unwrap_or(0.0),
        deployments,
        app_host: sup.config().app_host.to_string(),
        data_dir: sup.config().data_dir.to_string_lossy().into_owned(),
        uptime_s: sup.uptime().as_secs(),
        venvs_in_use: venvs.in_use,
        venvs_unused: venvs.unused,
        venvs_unused_bytes: venvs.unused_bytes,
        artifacts_in_use: artifacts.in_use,
        artifacts_in_use_bytes: artifacts.in_use_bytes,
        artifacts_unused: artifacts.unused,
        artifacts_unused_bytes: artifacts.unused_bytes,
        memory_committed_bytes,
        cpus_committed,
        gpus_total,
        gpus_free,
        overcommit: sup.config().overcommit,
        limits_enforced: sup.tracker().limits().describe(),
        gpus,
    }
}

/// What a set of releases was promised: memory (bytes) and CPU quotas (cores), each
/// per-replica limit × replicas (at least 1), summed; a release without the limit adds
/// nothing. The deploy preflight's definition of committed memory
/// (`pipeline::preflight::resources`), here over every deployment's current release.
pub(crate) fn promised<'a>(releases: impl IntoIterator<Item = (&'a Resources, u32)>) -> (u64, f64) {
    releases
        .into_iter()
        .fold((0u64, 0.0f64), |(memory, cpus), (r, replicas)| {
            let replicas = replicas.max(1);
            (
                memory.saturating_add(r.memory.unwrap_or(0).saturating_mul(u64::from(replicas))),
                cpus + r.cpus.unwrap_or(0.0) * f64::from(replicas),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn limits(memory: Option<u64>, cpus: Option<f64>) -> Resources {
        Resources {
            memory,
            cpus,
            ..Resources::default()
        }
    }

    #[test]
    fn promised_sums_limits_times_replicas() {
        assert_eq!(promised([]), (0, 0.0));
        let a = limits(Some(256 * MIB), None);
        let b = limits(Some(128 * MIB), Some(0.5));
        let none = Resources::default();
        assert_eq!(promised([(&a, 1), (&b, 1), (&none, 3)]), (384 * MIB, 0.5));
        // Replicas multiply; 0 replicas counts as one (as validated specs have).
        assert_eq!(promised([(&b, 3), (&a, 0)]), (640 * MIB, 1.5));
        // No overflow on absurd records.
        let huge = limits(Some(u64::MAX), None);
        assert_eq!(promised([(&huge, 2), (&a, 1)]).0, u64::MAX);
    }
}
