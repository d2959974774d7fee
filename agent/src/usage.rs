//! CPU and memory of each app, sampled in the background with sysinfo, so `status` and
//! `/metrics` answer from memory. An app's figure is the sum over its processes: every
//! process of its instance (see [`crate::tracking`]: its group, its cgroup or its marked
//! processes, daemonized descendants included). Processes, not threads: on Linux sysinfo
//! lists every thread as a process of its own by default, and each would count the whole
//! process's memory and CPU again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::limits::Stats;
use crate::tracking::{self, Tracking};

#[derive(Default)]
pub(crate) struct Usage {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sys: Mutex<Option<System>>,
    /// Leader pid -> (CPU percent, resident bytes), from the last sample.
    last: Mutex<HashMap<u32, (f32, u64)>>,
    /// Instance id -> what the kernel said of its groups at the last sample (instances
    /// with groups only).
    kernel: Mutex<HashMap<String, Stats>>,
}

impl Usage {
    /// The last sample for an app (zeros until the first sample).
    pub(crate) fn of(&self, pid: u32) -> (f32, u64) {
        let last = self.inner.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(&pid).copied().unwrap_or_default()
    }

    /// What the kernel said of a running instance's groups at the last sample (by its
    /// tracking id), when it has groups and was sampled.
    pub(crate) fn kernel_of(&self, id: &str) -> Option<Stats> {
        if id.is_empty() {
            return None;
        }
        let kernel = self.inner.kernel.lock().unwrap_or_else(|p| p.into_inner());
        kernel.get(id).cloned()
    }

    /// Refreshes the apps' processes and sums each app's (on a blocking thread: /proc).
    pub(crate) async fn sample(&self, apps: Vec<(u32, Tracking)>) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.sample(&apps)).await;
    }
}

impl Inner {
    fn sample(&self, apps: &[(u32, Tracking)]) {
        // The kernel's figures of the instances with groups (a few small files each).
        let kernel: HashMap<String, Stats> = apps
            .iter()
            .filter(|(_, t)| !t.id.is_empty() && (t.cgroup.is_some() || !t.limits.is_empty()))
            .map(|(_, t)| (t.id.clone(), t.stats()))
            .collect();
        *self.kernel.lock().unwrap_or_else(|p| p.into_inner()) = kernel;
        let members: Vec<(u32, Vec<u32>)> = apps
            .iter()
            .map(|(leader, _)| *leader)
            .zip(tracking::members_of_all(apps))
            .collect();
        let pids: Vec<Pid> = members
            .iter()
            .flat_map(|(_, m)| m.iter().map(|p| Pid::from_u32(*p)))
            .collect();
        let mut guard = self.sys.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = System::new().ok();
        }
        let Some(sys) = guard.as_mut() else {
            return;
        };
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .without_tasks(),
        );
        let sums: HashMap<u32, (f32, u64)> = members
            .iter()
            .map(|(leader, pids)| {
                let sum = pids
                    .iter()
                    .filter_map(|p| sys.process(Pid::from_u32(*p)))
                    .filter(|p| p.thread_kind().is_none())
                    .fold((0.0, 0), |(cpu, mem), p| {
                        (cpu + p.cpu_usage(), mem + p.memory())
                    });
                (*leader, sum)
            })
            .collect();
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = sums;
    }
}
