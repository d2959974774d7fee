//! On this node's cgroup v1 hierarchies: the kernel enforces what `apply` writes. They run
//! where `/sys/fs/cgroup/memory` (a v1 memory hierarchy) exists and is writable (root on a
//! hybrid node); elsewhere they say so and pass.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// The limits of every test here.
const LIMITS: Limits = Limits {
    memory: Some(64 << 20),
    cpus: Some(0.5),
    pids: Some(20),
};

/// One test's groups and children: killed, reaped and removed on drop, even on failure.
struct Groups {
    root: LimitsRoot,
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

/// The groups of a test-unique agent key and instance, limited by [`LIMITS`]. `None` on a
/// pure cgroup v2 node (these are the v1 writers' tests; there the end-to-end tests in
/// tests/tests/limits.rs prove the v2 limits); a node with neither fails the test.
fn groups(name: &str) -> Option<Groups> {
    let v1_memory = Path::new("/sys/fs/cgroup/memory");
    if nix::unistd::access(v1_memory, nix::unistd::AccessFlags::W_OK).is_err() {
        let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
        assert!(
            v2.split_whitespace().any(|c| c == "memory"),
            "no writable cgroup v1 memory hierarchy and no cgroup v2 memory controller: the agent could enforce no memory limit here"
        );
        eprintln!("not run: a pure cgroup v2 node (tests/tests/limits.rs covers it end to end)");
        return None;
    }
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let key = format!("test-{}-{n}", std::process::id());
    let root = LimitsRoot::detect(&key, None);
    let mut g = Groups {
        root,
        dirs: Vec::new(),
        children: Vec::new(),
    };
    let described = g.root.describe();
    assert_eq!(described, "memory, cpu, pids (cgroup v1)");
    g.dirs = g.root.apply(name, None, &LIMITS).unwrap();
    Some(g)
}

impl Groups {
    /// Spawns `cmd` into the groups, as the agent does: `cgroup.procs` opened before the
    /// fork, joined in `pre_exec`.
    fn spawn(&mut self, mut cmd: Command) -> &mut Child {
        let files: Vec<fs::File> = self
            .dirs
            .iter()
            .map(|d| crate::cgroup::procs_file(d).unwrap())
            .collect();
        // SAFETY: only write(2) on files opened before the fork (no allocation, no lock).
        unsafe {
            cmd.pre_exec(move || files.iter().try_for_each(crate::cgroup::join));
        }
        self.children.push(cmd.spawn().unwrap());
        let last = self.children.len() - 1;
        &mut self.children[last]
    }

    fn stats(&self) -> Stats {
        stats(None, &self.dirs)
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for dir in &self.dirs {
            for pid in crate::cgroup::procs(dir) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.dirs {
            // Until the last process (a grandchild reaped by init) is gone.
            poll(Duration::from_secs(10), || {
                remove(std::slice::from_ref(dir));
                (!dir.exists()).then_some(())
            });
        }
        for base in self.root.v1.all() {
            let _ = fs::remove_dir(base);
            // Shared with other tests and agents: removed when the last leaves it.
            if let Some(parent) = base.parent() {
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// `f()` until it gives something or `within` passes.
fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The Python interpreter itself (not a shim that would run in the group too).
fn python() -> Command {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    Command::new(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn memory_over_the_limit_is_oom_killed() {
    let Some(mut g) = groups("mem") else { return };
    let mut cmd = python();
    cmd.args([
        "-c",
        "b = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1",
    ]);
    let status = g.spawn(cmd).wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    let s = g.stats();
    assert_eq!(s.memory_limit, Some(64 << 20));
    assert!(s.oom_kills >= 1, "{s:?}");
}

#[test]
fn cpu_is_held_to_its_quota() {
    let Some(mut g) = groups("cpu") else { return };
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "while :; do :; done"]);
    g.spawn(cmd);
    let usage = |g: &Groups| g.stats().cpu_usage_usec.unwrap_or(0);
    // Measured from when it runs.
    poll(Duration::from_secs(5), || (usage(&g) > 0).then_some(())).unwrap();
    let (t0, u0) = (Instant::now(), usage(&g));
    // Not synchronisation: the window the usage is measured over.
    std::thread::sleep(Duration::from_millis(1500));
    let (wall, used) = (t0.elapsed(), usage(&g) - u0);
    let share = used as f64 / wall.as_micros() as f64;
    let s = g.stats();
    // Never (much) more than the quota; less when other work keeps the cores busy (a lower
    // bound would only measure the machine's load): throttling proves the quota held it.
    assert!((0.02..=0.7).contains(&share), "{share} of a core; {s:?}");
    // Once it used about its quota, the kernel throttled it (a node so busy that it got far
    // less had nothing to throttle).
    if share >= 0.4 {
        assert!(s.throttled_periods > 0, "{s:?}");
        assert!(s.throttled_usec > 0, "{s:?}");
    }
}

/// Forks children (each waiting for the parent to exit) until fork fails; says how many.
const FORKS: &str = "import os
r, w = os.pipe()
n = 0
try:
    while n < 100:
        if os.fork() == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        n += 1
except OSError:
    pass
print(n)
";

#[test]
fn forks_stop_at_the_pids_limit() {
    let Some(mut g) = groups("pids") else { return };
    let mut cmd = python();
    cmd.args(["-c", FORKS]).stdout(Stdio::piped());
    let child = g.spawn(cmd);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {out}");
    let forked: u64 = out.trim().parse().unwrap();
    // The parent is one of the 20.
    assert!((10..20).contains(&forked), "{forked} forks");
    assert!(g.stats().pids.is_some());
}
