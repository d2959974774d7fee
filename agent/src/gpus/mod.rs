//! The node's NVIDIA GPUs: found at start ([`discover`]), handed out whole to app replicas
//! ([`GpuPool`]), and shown to each replica's processes as only its own: by environment
//! ([`env_for`]) for CUDA, and by masking the other GPUs' device files ([`hidden_devices`])
//! so a process that ignores the environment cannot open them either.
//!
//! GPUs are named by UUID everywhere an app sees them: NVML's index order (PCI bus order)
//! and CUDA's default order (fastest first) can differ, a UUID means the same GPU to both.
//! Whole GPUs only: MIG instances are not listed.

mod nvml;
mod pool;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[allow(unused_imports)] // Shortage: named by callers once deploys are wired.
pub(crate) use pool::{holder, GpuPool, Shortage};

/// Device files every CUDA process needs whatever GPU it uses (the control device and the
/// unified memory driver). They are never hidden: they give no access to a GPU by
/// themselves, which is what the per-GPU `/dev/nvidia<minor>` files do.
#[allow(dead_code)] // Documents what is never masked.
pub(crate) const SHARED_DEVICES: [&str; 3] =
    ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

/// One GPU of the node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct Gpu {
    /// NVML's index (PCI bus order), for people: "GPU 0".
    pub index: u32,
    /// `GPU-…`: the name that is stable across reboots and driver reloads.
    pub uuid: String,
    /// The model, e.g. "NVIDIA A10".
    pub name: String,
    pub memory_bytes: u64,
    /// N of `/dev/nvidiaN`; `None` when the driver did not say (its file cannot be hidden).
    pub minor: Option<u32>,
}

impl Gpu {
    /// "GPU 0 NVIDIA A10", for messages.
    pub(crate) fn label(&self) -> String {
        format!("GPU {} {}", self.index, self.name)
    }

    /// The device file of this GPU, when its minor number is known.
    pub(crate) fn device_file(&self) -> Option<PathBuf> {
        self.minor.map(|m| PathBuf::from(format!("/dev/nvidia{m}")))
    }
}

/// What discovery found, and a sentence about it for the log and for refusals ("no NVIDIA
/// driver (libnvidia-ml.so.1 not found)", "2 NVIDIA GPUs found by NVML").
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Discovery {
    pub gpus: Vec<Gpu>,
    pub note: String,
}

impl Discovery {
    /// No GPUs, for the reason given.
    pub(crate) fn none(note: impl Into<String>) -> Discovery {
        Discovery {
            gpus: Vec::new(),
            note: note.into(),
        }
    }
}

/// The node's GPUs, asked of the NVIDIA driver (NVML, loaded at run time). Never fails: a
/// node without a driver, or whose driver does not answer, has none, and the note says why.
/// Blocking (the driver may take a second or more to wake the GPUs): call it once at start,
/// off the async threads.
pub(crate) fn discover() -> Discovery {
    let found = nvml::discover();
    tracing::info!(gpus = found.gpus.len(), note = %found.note, "GPU discovery");
    found
}

/// The environment that shows a replica its GPUs and no others.
///
/// With GPUs assigned, both variables list their UUIDs (`GPU-…,GPU-…`), in index order.
/// With none, `CUDA_VISIBLE_DEVICES=""` (CUDA then sees no device; unset would mean all of
/// them) and `NVIDIA_VISIBLE_DEVICES=void` (the NVIDIA container runtime then gives a
/// container started by the app no GPU and no driver files; "none" would still mount the
/// driver). Both are set even on a node without GPUs: it costs nothing and holds if one is
/// added or discovery failed.
pub(crate) fn env_for(assigned: &[Gpu]) -> Vec<(String, String)> {
    let (cuda, nvidia) = if assigned.is_empty() {
        (String::new(), "void".to_string())
    } else {
        let mut sorted: Vec<&Gpu> = assigned.iter().collect();
        sorted.sort_by_key(|g| g.index);
        let uuids: Vec<&str> = sorted.iter().map(|g| g.uuid.as_str()).collect();
        (uuids.join(","), uuids.join(","))
    };
    vec![
        ("CUDA_VISIBLE_DEVICES".to_string(), cuda),
        ("NVIDIA_VISIBLE_DEVICES".to_string(), nvidia),
    ]
}

/// The device files to mask (bind-mount `/dev/null` over) in a replica's private mount
/// namespace: those of the node's GPUs not assigned to it, in index order. The environment
/// alone is advice a process may ignore; without these files it cannot open another GPU.
/// [`SHARED_DEVICES`] are never in the list. A GPU whose minor number is unknown cannot be
/// masked and is left out (discovery's note says so).
pub(crate) fn hidden_devices(all: &[Gpu], assigned: &[Gpu]) -> Vec<PathBuf> {
    let mut others: Vec<&Gpu> = all
        .iter()
        .filter(|g| !assigned.iter().any(|a| a.uuid == g.uuid))
        .collect();
    others.sort_by_key(|g| g.index);
    others.iter().filter_map(|g| g.device_file()).collect()
}
