//! What this node is, for `deployctl nodes`: version, hostname and resources (sysinfo).

use std::sync::Arc;

use deployctl_proto::v1::NodeInfoReply;
use sysinfo::{Disks, System};

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
    }
}
