//! `/proc/PID/stat`: a process's state, process group and start time. The start time (field
//! 22, clock ticks since boot) tells a process apart from a later one that got the same pid,
//! so the agent never adopts or signals a stranger after a restart.

use serde::{Deserialize, Serialize};

/// The parts of `/proc/PID/stat` the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    /// R, S, D, Z (zombie), X (dead), ...
    pub state: char,
    pub pgrp: u32,
    /// Clock ticks after boot at which the process started.
    pub start_time: u64,
}

impl Stat {
    /// Running (or sleeping): not a zombie waiting to be reaped, not dead.
    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// A process as the agent remembers it across restarts: its pid and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcId {
    pub pid: u32,
    /// `/proc/PID/stat` field 22.
    pub start_time: u64,
}

impl ProcId {
    /// The process running now as `pid`, if any (zombies included: they have an identity).
    pub(crate) fn of(pid: u32) -> Option<ProcId> {
        read(pid).map(|s| ProcId {
            pid,
            start_time: s.start_time,
        })
    }

    /// Whether this very process (same pid, same start time) is still running: any of its
    /// threads (its main thread may have exited while others still serve).
    pub(crate) fn is_running(&self) -> bool {
        read(self.pid).is_some_and(|s| s.start_time == self.start_time) && process_alive(self.pid)
    }
}

/// Reads `/proc/PID/stat`; `None` when there is no such process.
pub(crate) fn read(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse(&text)
}

/// Parses one stat line. The command name is in parentheses and may hold spaces and
/// parentheses itself, so fields are counted after the last `)`.
pub(crate) fn parse(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether a process is alive: any of its threads is neither a zombie nor dead. A process
/// whose main thread exited is a zombie in `/proc/PID/stat` while its other threads run
/// (and hold its sockets) until the last one exits.
pub(crate) fn process_alive(pid: u32) -> bool {
    match read(pid) {
        None => false,
        Some(s) if s.is_live() => true,
        Some(_) => std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("stat"))
                    .ok()
                    .and_then(|text| parse(&text))
                    .is_some_and(|s| s.is_live())
            })
        }),
    }
}

/// Whether any member of process group `pgid` is alive (zombies do not count: on a node
/// whose init does not reap orphans they would look alive forever; a zombie leader whose
/// other threads run is alive).
pub(crate) fn group_has_live_member(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_some_and(|pid| read(pid).is_some_and(|s| s.pgrp == pgid) && process_alive(pid))
    })
}

/// The children of every thread of `pid` (`/proc/PID/task/*/children`: a child belongs to
/// the thread that forked it, and orphans are given to any thread of a subreaper).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn parses_a_name_with_spaces_and_parens() {
        let line = "4242 (my (weird) app) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 12345 67 18446744073709551615";
        let s = parse(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.start_time, 987654);
        assert!(s.is_live());
    }

    /// A process whose main thread exited while another thread runs is alive, as is its
    /// group; it is gone once the last thread ends.
    #[test]
    fn a_process_lives_while_any_thread_does() {
        let code = "import ctypes, threading, time\n\
threading.Thread(target=lambda: time.sleep(1.5)).start()\n\
ctypes.CDLL(None).pthread_exit(None)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", code])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while read(pid).is_some_and(|s| s.is_live()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the main thread never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The leader is a zombie, its other thread sleeps.
        assert_eq!(read(pid).map(|s| s.state), Some('Z'));
        assert!(process_alive(pid));
        assert!(group_has_live_member(pid));
        assert!(ProcId::of(pid).unwrap().is_running());
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!group_has_live_member(pid));
    }

    #[test]
    fn reads_this_process() {
        let me = ProcId::of(std::process::id()).unwrap();
        assert!(me.is_running());
        let other = ProcId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(
            !other.is_running(),
            "a different start time is another process"
        );
        assert!(group_has_live_member(nix::unistd::getpgrp().as_raw() as u32));
    }
}
