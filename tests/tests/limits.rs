//! Resource walls enforced by the kernel (cgroup v1 or v2): a memory hog is OOM-killed at
//! its own limit and says so while its neighbour keeps serving, a build is limited apart
//! from the app, a CPU spinner gets its quota, a fork bomb stops at its pids, and GPUs a
//! node does not have are refused before anything runs.

use std::time::Duration;

use deployctl_e2e::*;

#[test]
fn a_memory_hog_is_killed_at_its_limit_and_its_neighbour_keeps_serving() {
    require_root("cgroup limits need the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write("hog.py", HOG_PY);
    repo.commit_app("limits", None);
    let url = repo.url();
    project
        .run_on_port(
            "calm",
            &url,
            "python3 app.py",
            "8001",
            &["--memory", "256M"],
        )
        .ok();
    project
        .run_on_port(
            "hog",
            &url,
            "python3 hog.py",
            "8000",
            &["--memory", "64M", "--restart", "never"],
        )
        .ok();
    let mut last = String::new();
    let said = wait_until(Duration::from_secs(20), || {
        last = project
            .deployctl(&["status", "hog", "--output", "json"])
            .all();
        last.contains("out of memory at its 64 MiB limit")
    });
    assert!(said, "status does not say why the hog died:\n{last}");
    // And its log, where a user looks for its last words.
    let logs = project.deployctl(&["logs", "hog"]);
    logs.mentions("out of memory at its 64 MiB limit");
    // The neighbour was never touched.
    let calm = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(5));
    assert_eq!(calm["marker"], "limits");
    // A GPU on a node without one: refused before anything runs, naming the field.
    let out = project.run_on_port("gpu", &url, "python3 app.py", "8002", &["--gpus", "1"]);
    out.refused_before_anything_ran(&agent, "gpu")
        .mentions("resources.gpus")
        .mentions("none");
}

#[test]
fn the_build_has_its_own_memory_limit_apart_from_the_app() {
    require_root("cgroup limits need the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    // A start script that needs 160 MiB (a model converted at start, say).
    repo.write_executable(
        "prepare.sh",
        "python3 -c 'b = bytearray(160 * 1024 * 1024); print(\"converted\", len(b))'\n",
    );
    repo.commit_app("build", None);
    let url = repo.url();
    let run = |name: &str, port: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            name,
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--port",
            port,
            "--start-script",
            "prepare.sh",
        ];
        args.extend_from_slice(extra);
        project.deployctl(&args)
    };
    // The app's own limit does not hold the build back.
    run("roomy", "8000", &["--memory", "64M"]).ok();
    // A build limit it does not fit in: the start script is OOM-killed, and the deploy says so.
    let out = run("tight", "8001", &["--build-memory", "64M"]);
    out.refused_before_anything_ran(&agent, "tight")
        .mentions("out of memory at its 64 MiB build_memory limit");
}

/// CPU time the instance's cgroup used so far (cgroup v1 cpuacct, or v2 cpu.stat), in ns.
fn cpu_used_ns(record: &serde_json::Value) -> Option<u64> {
    let t = &record["tracking"];
    let dirs = t["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&t["cgroup"]))
        .filter_map(|d| d.as_str().map(std::path::PathBuf::from));
    for dir in dirs {
        if let Ok(v) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
            return v.trim().parse().ok();
        }
        if let Ok(stat) = std::fs::read_to_string(dir.join("cpu.stat")) {
            if let Some(us) = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                return Some(us * 1000);
            }
        }
    }
    None
}

/// Periods the kernel throttled the instance's CPU (`nr_throttled` of its cpu.stat).
fn throttled(record: &serde_json::Value) -> u64 {
    let t = &record["tracking"];
    t["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&t["cgroup"]))
        .filter_map(|d| d.as_str())
        .filter_map(|d| std::fs::read_to_string(std::path::Path::new(d).join("cpu.stat")).ok())
        .filter_map(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn a_cpu_spinner_gets_about_its_quota() {
    require_root("cgroup limits need the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write("spin.py", SPIN_PY);
    repo.commit_app("spin", None);
    project
        .run_on_port(
            "spin",
            &repo.url(),
            "python3 spin.py",
            "8000",
            &["--cpus", "0.5"],
        )
        .ok();
    let record = agent.record("spin").expect("a record");
    let before = cpu_used_ns(&record).expect("the instance's cgroup CPU usage");
    let t0 = std::time::Instant::now();
    // Measured over 2 s of wall time (the measurement itself, not a synchronisation).
    std::thread::sleep(Duration::from_secs(2));
    let after = cpu_used_ns(&record).expect("the instance's cgroup CPU usage");
    let share = (after - before) as f64 / t0.elapsed().as_nanos() as f64;
    // Half a core on an idle node; far less when the other tests keep both cores busy (a
    // lower bound would only measure the machine's load), never (much) more: the kernel
    // throttled it.
    assert!(
        (0.02..=0.65).contains(&share),
        "a spinner with cpus 0.5 used {share:.2} of a core"
    );
    // The quota the kernel holds it to: half of each period (cgroup v1 or v2).
    assert_eq!(
        cpu_quota(&record),
        Some((50_000, 100_000)),
        "the spinner's cgroup has no 0.5-core quota"
    );
    // Once it used about its quota, the kernel throttled it (on a node so busy that it got
    // far less, there was nothing to throttle).
    if share >= 0.4 {
        assert!(
            throttled(&record) > 0,
            "the kernel never throttled the spinner"
        );
    }
}

/// The CPU quota and period (µs) of the instance's cgroups: `cpu.max` (v2) or
/// `cpu.cfs_quota_us`/`cpu.cfs_period_us` (v1).
fn cpu_quota(record: &serde_json::Value) -> Option<(u64, u64)> {
    let t = &record["tracking"];
    let dirs: Vec<std::path::PathBuf> = t["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&t["cgroup"]))
        .filter_map(|d| d.as_str().map(std::path::PathBuf::from))
        .collect();
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    dirs.iter().find_map(|dir| {
        if let Some(max) = read(dir.join("cpu.max")) {
            let mut parts = max.split_whitespace().map(|v| v.parse::<u64>().ok());
            return Some((parts.next()??, parts.next()??));
        }
        let quota = read(dir.join("cpu.cfs_quota_us"))?.trim().parse().ok()?;
        let period = read(dir.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
        Some((quota, period))
    })
}

/// Serves how many children it could fork, forking as many as it can.
const FORKS: &str = r#"import json, os, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer
seen = {"forks": 0, "refused": 0}
def bomb():
    while True:
        try:
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            seen["forks"] += 1
        except OSError:
            seen["refused"] += 1
            time.sleep(0.05)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(seen).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
# One thread serves (a new thread per request would itself need a pid).
server = HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H)
threading.Thread(target=bomb, daemon=True).start()
server.serve_forever()
"#;

#[test]
fn a_fork_bomb_stops_at_its_pids_and_the_node_keeps_answering() {
    require_root("cgroup limits need the agent to run as root");
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent("e2e", &agent);
    let repo = GitRepo::new();
    repo.write("forks.py", FORKS);
    repo.commit_app("forks", None);
    let url = repo.url();
    project
        .run_on_port("bomb", &url, "python3 forks.py", "8000", &["--pids", "64"])
        .ok();
    let mut last = serde_json::Value::Null;
    let stopped = wait_until(Duration::from_secs(20), || {
        last = get_json(&agent.app_url(8000, "/")).unwrap_or_default();
        last["refused"].as_u64().unwrap_or(0) > 0
    });
    assert!(stopped, "the fork bomb was never refused: {last}");
    assert!(last["forks"].as_u64().unwrap_or(99) < 64, "{last}");
    // The agent and a new deployment beside it are fine.
    project
        .run_on_port("calm", &url, "python3 app.py", "8001", &[])
        .ok();
    let calm = wait_for_json(&agent.app_url(8001, "/"), Duration::from_secs(10));
    assert_eq!(calm["marker"], "forks");
    project.deployctl(&["status"]).ok();
}
