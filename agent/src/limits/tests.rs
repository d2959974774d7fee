//! The parsers, and limits written into fake v1/v2 trees (files pre-created as the kernel
//! would have them).

use super::*;

/// A temporary directory removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("limits-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Creates `dir` with the given files.
pub(super) fn group(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
}

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn finds_own_v1_groups() {
    let cgroup =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    let own = |c| v1::own_dir(HYBRID_MOUNTINFO, cgroup, c);
    assert_eq!(
        own("memory"),
        Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
    );
    assert_eq!(own("cpu"), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
    assert_eq!(
        own("cpuacct"),
        Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
    );
    assert_eq!(own("pids"), Some(PathBuf::from("/sys/fs/cgroup/pids")));
    assert_eq!(own("blkio"), None);
    // "name=systemd" is no controller named "systemd"; cgroup2 is not v1.
    assert_eq!(own("systemd"), None);

    // Co-mounted cpu,cpuacct; a hierarchy mounted from below its root (a container).
    let mountinfo = "\
25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 20 0:23 /docker/f00 /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
";
    let cgroup = "5:memory:/docker/f00/app\n3:cpu,cpuacct:/system.slice/x.service\n";
    let own = |c| v1::own_dir(mountinfo, cgroup, c);
    let cpu = Some(PathBuf::from(
        "/sys/fs/cgroup/cpu,cpuacct/system.slice/x.service",
    ));
    assert_eq!(own("cpu"), cpu);
    assert_eq!(own("cpuacct"), cpu);
    assert_eq!(
        own("memory"),
        Some(PathBuf::from("/sys/fs/cgroup/memory/app"))
    );
}

#[test]
fn lays_out_below_the_delegated_cgroup_not_the_agents_leaf() {
    assert_eq!(
        anchor("/system.slice/a.service/agent"),
        "/system.slice/a.service"
    );
    assert_eq!(anchor("/system.slice/a.service"), "/system.slice/a.service");
    assert_eq!(anchor("/agent"), "/");
    assert_eq!(anchor("/"), "/");
    assert_eq!(anchor("/x/myagent"), "/x/myagent");
}

#[test]
fn parses_flat_keyed_files_and_cpu_quotas() {
    let stat = "usage_usec 1200\nuser_usec 1000\nnr_throttled 7\nthrottled_usec 3500\n";
    assert_eq!(stats::keyed(stat, "usage_usec"), Some(1200));
    assert_eq!(stats::keyed(stat, "nr_throttled"), Some(7));
    assert_eq!(stats::keyed(stat, "throttled"), None);
    assert_eq!(cpu_quota(0.5), 50_000);
    assert_eq!(cpu_quota(2.0), 200_000);
    assert_eq!(cpu_quota(0.0001), CPU_MIN_QUOTA_USEC);
}

/// A fake v1 node: memory (own group /app), cpu and cpuacct apart, pids; returns the
/// mountinfo and /proc/self/cgroup texts.
fn fake_v1(root: &Path) -> (String, String) {
    let mut mountinfo = String::new();
    for (i, c) in ["memory", "cpu", "cpuacct", "pids"].iter().enumerate() {
        let mount = root.join(c);
        mountinfo += &format!(
            "{} 1 0:{i} / {} rw - cgroup cgroup rw,{c}\n",
            30 + i,
            mount.display()
        );
        let own = if *c == "memory" {
            mount.join("app")
        } else {
            mount
        };
        group(&own, &[("cgroup.procs", "")]);
    }
    let cgroup = "4:pids:/\n3:cpuacct:/\n2:cpu:/\n1:memory:/app\n0::/\n".to_string();
    (mountinfo, cgroup)
}

#[test]
fn writes_limits_into_v1_groups() {
    let scratch = Scratch::new("v1");
    let (mountinfo, cgroup) = fake_v1(&scratch.0);
    let mut notes = Vec::new();
    let bases = v1::prepare(&mountinfo, &cgroup, "k1", Support::default(), &mut notes);
    let memory = scratch.0.join("memory/app/deploy-agent/k1");
    assert_eq!(bases.memory.as_ref(), Some(&memory));
    assert!(bases.cpuacct.is_some(), "cpuacct is a hierarchy of its own");
    let root = LimitsRoot {
        v2: Support::default(),
        v1: bases,
    };
    assert_eq!(root.describe(), "memory, cpu, pids (cgroup v1)");

    // The kernel's files of a new group.
    let mem = memory.join("i1");
    group(
        &mem,
        &[
            ("memory.limit_in_bytes", ""),
            ("memory.memsw.limit_in_bytes", ""),
        ],
    );
    let cpu = scratch.0.join("cpu/deploy-agent/k1/i1");
    group(&cpu, &[("cpu.cfs_period_us", ""), ("cpu.cfs_quota_us", "")]);
    let acct = scratch.0.join("cpuacct/deploy-agent/k1/i1");
    group(&acct, &[("cpuacct.usage", "")]);
    let pids = scratch.0.join("pids/deploy-agent/k1/i1");
    group(&pids, &[("pids.max", "")]);

    let limits = Limits {
        memory: Some(64 << 20),
        cpus: Some(0.5),
        pids: Some(20),
    };
    let dirs = root.apply("i1", None, &limits).unwrap();
    assert_eq!(dirs, vec![mem.clone(), cpu.clone(), acct, pids.clone()]);
    assert_eq!(root.v1_dirs("i1"), dirs);
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "67108864");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&pids, "pids.max"), "20");

    // No limit: back to none.
    root.apply("i1", None, &Limits::default()).unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "-1");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "-1");
    assert_eq!(read(&pids, "pids.max"), "max");

    // A group the "kernel" gives no files: an error naming the file, nothing left behind.
    let err = root.apply("i2", None, &limits).unwrap_err();
    assert!(err.to_string().contains("memory.limit_in_bytes"), "{err}");
    assert!(!memory.join("i2").exists());

    // Left by a crash: removed unless kept.
    root.remove_unused(&dirs);
    assert!(mem.exists());
    fs::create_dir(memory.join("stale")).unwrap();
    root.remove_unused(&dirs);
    assert!(!memory.join("stale").exists());
}

#[test]
fn refuses_what_it_cannot_enforce() {
    let root = LimitsRoot {
        v2: Support {
            memory: true,
            cpu: false,
            pids: true,
        },
        v1: V1Bases::default(),
    };
    assert_eq!(
        root.describe(),
        "memory, pids (cgroup v2); cpu: unsupported"
    );
    let limits = Limits {
        cpus: Some(1.0),
        ..Limits::default()
    };
    let err = root
        .apply("i", Some(Path::new("/nonexistent")), &limits)
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("cpus limit"), "{err}");
    let none = LimitsRoot::default();
    assert_eq!(none.describe(), "none (no writable cgroup hierarchy)");
    assert_eq!(none.supports(), Support::default());
    // Nothing asked, nothing to do.
    assert_eq!(
        none.apply("i", None, &Limits::default()).unwrap(),
        Vec::<PathBuf>::new()
    );
    assert!(none.apply("../x", None, &Limits::default()).is_err());
    let full = LimitsRoot {
        v2: Support {
            memory: true,
            cpu: true,
            pids: true,
        },
        v1: V1Bases::default(),
    };
    let bad = Limits {
        cpus: Some(f64::NAN),
        ..Limits::default()
    };
    assert_eq!(
        full.apply("i", None, &bad).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

/// A fake v2 tree below a non-root `own` holding the agent (pid 4242); cpu is not given to
/// `deploy-agent`.
fn fake_v2(own: &Path) -> PathBuf {
    group(
        own,
        &[
            ("cgroup.type", "domain"),
            ("cgroup.procs", "4242\n"),
            ("cgroup.controllers", "cpuset cpu io memory pids"),
            ("cgroup.subtree_control", ""),
        ],
    );
    group(&own.join("agent"), &[("cgroup.procs", "")]);
    let key = own.join("deploy-agent/k1");
    for dir in [own.join("deploy-agent"), key.clone()] {
        group(
            &dir,
            &[
                ("cgroup.type", "domain"),
                ("cgroup.procs", ""),
                ("cgroup.controllers", "memory pids"),
                ("cgroup.subtree_control", ""),
            ],
        );
    }
    key
}

#[test]
fn enables_v2_controllers_moving_the_agent_to_a_leaf() {
    let scratch = Scratch::new("v2");
    let own = scratch.0.join("agent.service");
    let key = fake_v2(&own);
    let mut notes = Vec::new();
    let support = v2::enable(&key, &mut notes);
    assert_eq!(
        support,
        Support {
            memory: true,
            cpu: false,
            pids: true
        }
    );
    assert_eq!(read(&own.join("agent"), "cgroup.procs"), "4242");
    // Each controller written on its own (the fake file keeps the last).
    assert_eq!(read(&key, "cgroup.subtree_control"), "+pids");
    assert!(notes.iter().any(|n| n.contains("no cpu in")), "{notes:?}");

    // The root cgroup may have processes and enable controllers: nobody is moved.
    let root = scratch.0.join("root");
    let key = fake_v2(&root);
    fs::remove_file(root.join("cgroup.type")).unwrap();
    v2::enable(&key, &mut notes);
    assert_eq!(read(&root.join("agent"), "cgroup.procs"), "");

    // Limits into an instance's cgroup.
    let files = [
        ("memory.max", "max"),
        ("memory.swap.max", "max"),
        ("cpu.max", "max 100000"),
        ("pids.max", "max"),
    ];
    let dir = key.join("i1");
    group(&dir, &files);
    let all = Support {
        memory: true,
        cpu: true,
        pids: true,
    };
    let root = LimitsRoot {
        v2: all,
        v1: V1Bases::default(),
    };
    assert_eq!(root.describe(), "memory, cpu, pids (cgroup v2)");
    let limits = Limits {
        memory: Some(1 << 30),
        cpus: Some(1.5),
        pids: Some(100),
    };
    assert_eq!(
        root.apply("i1", Some(&dir), &limits).unwrap(),
        Vec::<PathBuf>::new()
    );
    assert_eq!(read(&dir, "memory.max"), "1073741824");
    assert_eq!(read(&dir, "memory.swap.max"), "0");
    assert_eq!(read(&dir, "cpu.max"), "150000 100000");
    assert_eq!(read(&dir, "pids.max"), "100");
    root.apply("i1", Some(&dir), &Limits::default()).unwrap();
    for (name, value) in files {
        assert_eq!(read(&dir, name), value);
    }
    assert!(
        root.apply("i1", None, &limits).is_err(),
        "no v2 dir to write into"
    );
}
