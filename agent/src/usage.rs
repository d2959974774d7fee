//! CPU and memory of each app, sampled in the background with sysinfo (an app's figure is
//! its process and all its descendants), so `status` answers from memory.

use std::collections::HashMap;
use std::sync::Mutex;

use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Default)]
pub struct Usage {
    sys: Mutex<Option<System>>,
    /// Leader pid -> (CPU percent, resident bytes), from the last sample.
    last: Mutex<HashMap<u32, (f32, u64)>>,
}

impl Usage {
    /// The last sample for an app (zeros until the first sample).
    pub fn of(&self, pid: u32) -> (f32, u64) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(&pid).copied().unwrap_or_default()
    }

    /// Refreshes all processes and sums each tracked app's tree. Blocking (reads /proc).
    pub fn sample(&self, leaders: &[u32]) {
        let mut guard = self.sys.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = System::new().ok();
        }
        let Some(sys) = guard.as_mut() else {
            return;
        };
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let mut sums: HashMap<u32, (f32, u64)> = leaders.iter().map(|p| (*p, (0.0, 0))).collect();
        for (pid, proc_) in sys.processes() {
            // Walk up to the tracked leader, if any (bounded: process trees are shallow).
            let mut cur = Some(*pid);
            for _ in 0..32 {
                let Some(p) = cur else { break };
                if let Some(entry) = sums.get_mut(&p.as_u32()) {
                    entry.0 += proc_.cpu_usage();
                    entry.1 += proc_.memory();
                    break;
                }
                cur = sys.process(p).and_then(|x| x.parent());
            }
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = sums;
    }
}
