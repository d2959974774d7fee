//! What the kernel says of an instance's groups: usage against limits, OOM kills, CPU
//! throttling (a quota too small shows there before anywhere else).

use std::fs;
use std::path::{Path, PathBuf};

/// A v1 memory limit this high is no limit (the kernel shows "unlimited" as the largest
/// page-aligned i64, 9223372036854771712).
const V1_UNLIMITED: u64 = 1 << 62;

/// What the kernel says of one instance's groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Stats {
    /// Memory charged to the instance (RAM, page cache included).
    pub memory_bytes: Option<u64>,
    /// `None`: no limit (or no memory controller).
    pub memory_limit: Option<u64>,
    /// Processes the kernel killed for the instance's memory limit.
    pub oom_kills: u64,
    /// CPU time used by the instance's processes (µs).
    pub cpu_usage_usec: Option<u64>,
    /// CFS periods that have elapsed while the instance had a CPU quota and ran.
    pub cpu_periods: u64,
    /// CFS periods in which the instance used its whole CPU quota.
    pub throttled_periods: u64,
    /// Time the instance was held back by its CPU quota (µs).
    pub throttled_usec: u64,
    /// Processes and threads now.
    pub pids: Option<u64>,
}

/// Reads them (blocking): from the instance's v2 cgroup for the controllers enabled there,
/// and from its v1 groups (as [`super::LimitsRoot::apply`] returned them; which is which is
/// told by its files). What cannot be read stays `None`/0.
pub(crate) fn stats(v2_instance_dir: Option<&Path>, v1_dirs: &[PathBuf]) -> Stats {
    let mut s = Stats::default();
    let mut throttled = None;
    if let Some(dir) = v2_instance_dir {
        s.memory_bytes = number(&dir.join("memory.current"));
        s.memory_limit = number(&dir.join("memory.max"));
        if let Some(events) = read(&dir.join("memory.events")) {
            s.oom_kills = keyed(&events, "oom_kill").unwrap_or(0);
        }
        // usage_usec is there without the cpu controller too (core accounting).
        if let Some(stat) = read(&dir.join("cpu.stat")) {
            s.cpu_usage_usec = keyed(&stat, "usage_usec");
            if let Some(periods) = keyed(&stat, "nr_throttled") {
                s.cpu_periods = keyed(&stat, "nr_periods").unwrap_or(0);
                throttled = Some((periods, keyed(&stat, "throttled_usec").unwrap_or(0)));
            }
        }
        s.pids = number(&dir.join("pids.current"));
    }
    for dir in v1_dirs {
        if dir.join("memory.usage_in_bytes").exists() {
            s.memory_bytes = s
                .memory_bytes
                .or(number(&dir.join("memory.usage_in_bytes")));
            let limit = number(&dir.join("memory.limit_in_bytes")).filter(|l| *l < V1_UNLIMITED);
            s.memory_limit = s.memory_limit.or(limit);
            // The oom_kill line: Linux 4.13+.
            if let Some(control) = read(&dir.join("memory.oom_control")) {
                s.oom_kills = s.oom_kills.max(keyed(&control, "oom_kill").unwrap_or(0));
            }
        }
        if dir.join("cpu.cfs_quota_us").exists() && throttled.is_none() {
            if let Some(stat) = read(&dir.join("cpu.stat")) {
                let periods = keyed(&stat, "nr_throttled").unwrap_or(0);
                s.cpu_periods = keyed(&stat, "nr_periods").unwrap_or(0);
                let ns = keyed(&stat, "throttled_time").unwrap_or(0);
                throttled = Some((periods, ns / 1000));
            }
        }
        // cpuacct: its own hierarchy, or co-mounted with cpu (the same dir).
        if let Some(ns) = number(&dir.join("cpuacct.usage")) {
            s.cpu_usage_usec = Some(ns / 1000);
        }
        if dir.join("pids.max").exists() {
            s.pids = s.pids.or(number(&dir.join("pids.current")));
        }
    }
    (s.throttled_periods, s.throttled_usec) = throttled.unwrap_or((0, 0));
    s
}

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// A file of one number; "max" (or anything else) is `None`.
fn number(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// The value of the `key value` line of a flat-keyed file (`cpu.stat`, `memory.events`).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::tests::{group, Scratch};

    #[test]
    fn reads_stats_of_v2_and_v1_groups() {
        let scratch = Scratch::new("stats");
        let v2 = scratch.0.join("v2");
        group(
            &v2,
            &[
                ("memory.current", "1000\n"),
                ("memory.max", "max\n"),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
                ("cpu.stat", "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 9\nnr_throttled 4\nthrottled_usec 800\n"),
                ("pids.current", "3\n"),
            ],
        );
        let s = stats(Some(&v2), &[]);
        assert_eq!(
            s,
            Stats {
                memory_bytes: Some(1000),
                memory_limit: None,
                oom_kills: 1,
                cpu_usage_usec: Some(5000),
                cpu_periods: 9,
                throttled_periods: 4,
                throttled_usec: 800,
                pids: Some(3),
            }
        );

        let mem = scratch.0.join("memory");
        group(
            &mem,
            &[
                ("memory.usage_in_bytes", "2048\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
            ],
        );
        // Co-mounted cpu,cpuacct.
        let cpu = scratch.0.join("cpu");
        group(
            &cpu,
            &[
                ("cpu.cfs_quota_us", "50000\n"),
                (
                    "cpu.stat",
                    "nr_periods 10\nnr_throttled 6\nthrottled_time 7000000\n",
                ),
                ("cpuacct.usage", "9000000\n"),
            ],
        );
        let pids = scratch.0.join("pids");
        group(&pids, &[("pids.max", "20\n"), ("pids.current", "5\n")]);
        let s = stats(None, &[mem.clone(), cpu, pids]);
        assert_eq!(
            s,
            Stats {
                memory_bytes: Some(2048),
                memory_limit: Some(64 << 20),
                oom_kills: 2,
                cpu_usage_usec: Some(9000),
                cpu_periods: 10,
                throttled_periods: 6,
                throttled_usec: 7000,
                pids: Some(5),
            }
        );
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(stats(None, &[mem]).memory_limit, None);
        assert_eq!(stats(None, &[]), Stats::default());
    }
}
