//! Which processes belong to an app: every thread of a process, every descendant of an app
//! (also ones that left its process group with `setsid` or a double fork), and orphans the
//! agent reaps as their child subreaper. Checked against `/proc`, by pid.

use std::fs;
use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";

/// An app that starts, besides its HTTP server on $HOST:$PORT:
/// a `setsid`'ed `sleep 4242` (new session), a double-forked `sleep 4343` (new session, its
/// parent gone: an orphan), and a double-forked `sleep 3` that ends soon (an orphan that
/// becomes a zombie unless someone reaps it). `GET /` → their pids; `GET /crash` → exits 3.
/// `APP_THREADS=N` starts N idle threads.
const FAMILY_PY: &str = r#"import json, os, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def double_fork(args):
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            os.setsid()
            os.write(w, str(os.getpid()).encode())
            os.execvp(args[0], args)
        os._exit(0)
    os.waitpid(middle, 0)
    pid = int(os.read(r, 32))
    os.close(r); os.close(w)
    return pid

info = {
    "pid": os.getpid(),
    "setsid": subprocess.Popen(["sleep", "4242"], start_new_session=True).pid,
    "double_fork": double_fork(["sleep", "4343"]),
    "short_orphan": double_fork(["sleep", "3"]),
}
stop = threading.Event()
for _ in range(int(os.environ.get("APP_THREADS", "0"))):
    threading.Thread(target=stop.wait, daemon=True).start()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            os._exit(3)
        body = json.dumps(info).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

server = ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
print("family listening", flush=True)
server.serve_forever()
"#;

/// `/proc/PID/stat` field 4.
fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn family(agent: &Agent) -> Value {
    let mut v = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            v = get_json(&agent.app_url(8000, "/")).unwrap_or(Value::Null);
            v["double_fork"].as_u64().is_some()
        }),
        "the app answers with its family"
    );
    v
}

/// The pids an app started that must not outlive it.
fn descendants(v: &Value) -> Vec<u32> {
    ["setsid", "double_fork"]
        .iter()
        .map(|k| v[*k].as_u64().unwrap_or(0) as u32)
        .collect()
}

fn assert_all_gone(what: &str, pids: &[u32]) {
    let ok = wait_until(Duration::from_secs(20), || {
        pids.iter().all(|p| !pid_alive(*p))
    });
    let alive: Vec<&u32> = pids.iter().filter(|p| pid_alive(**p)).collect();
    assert!(ok, "after {what}, these processes still run: {alive:?}");
}

fn nothing_survives(config: &str) {
    let ip = loopback();
    let agent = Agent::start_with(&ip, config, &[]);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", FAMILY_PY).commit("family v1");
    let url = repo.url();
    let restart = ["--restart", "on-failure"];
    project
        .deployctl(&fast_run_args(ENV, "fam", &url, &restart))
        .ok();
    let v1 = family(&agent);
    let first = descendants(&v1);
    assert!(first.iter().all(|p| pid_alive(*p)), "{v1}");
    // The agent is their child subreaper: the orphan is its child, not pid 1's.
    let agent_pid = agent.pid().expect("the agent runs");
    assert_eq!(
        ppid(v1["double_fork"].as_u64().unwrap() as u32),
        Some(agent_pid),
        "{v1}"
    );

    // Where the agent makes cgroups, the app and what it daemonized are in the instance's.
    if let Some(dir) = agent.cgroup_dir() {
        for pid in first.iter().chain([&(v1["pid"].as_u64().unwrap() as u32)]) {
            let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let path = cg.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("");
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                path.contains(&format!("/{name}/fam@1.")),
                "pid {pid} is in cgroup {path:?}"
            );
        }
    }

    // A crash restart: the new process starts alone.
    let _ = http_get(&agent.app_url(8000, "/crash"));
    let mut v2 = Value::Null;
    assert!(
        wait_until(Duration::from_secs(30), || {
            v2 = get_json(&agent.app_url(8000, "/")).unwrap_or(Value::Null);
            v2["pid"].as_u64().is_some() && v2["pid"] != v1["pid"]
        }),
        "the app was restarted after its crash"
    );
    assert_all_gone("a crash restart", &first);

    // A redeploy.
    let second = descendants(&v2);
    repo.write(
        "app.py",
        &FAMILY_PY.replace("family listening", "family v2 listening"),
    )
    .commit("family v2");
    project
        .deployctl(&fast_run_args(ENV, "fam", &url, &restart))
        .ok();
    let v3 = family(&agent);
    assert_ne!(v3["pid"], v2["pid"]);
    assert_all_gone("a redeploy", &second);

    // Remove.
    let third = descendants(&v3);
    project.deployctl(&["remove", "fam"]).ok();
    assert_all_gone("remove", &third);
    // Its cgroups are gone with it (where the agent makes them).
    if config.is_empty() && agent.cgroup_dir().is_some() {
        let left = agent.instance_cgroups();
        assert!(left.is_empty(), "cgroups left after remove: {left:?}");
    }
}

#[test]
fn nothing_an_app_started_survives_remove_redeploy_or_crash() {
    nothing_survives("");
}

#[test]
fn without_cgroups_the_marker_finds_every_descendant() {
    nothing_survives("cgroups = false\n");
}

#[test]
fn after_kill9_of_the_agent_the_readopted_app_is_still_all_its_processes() {
    let ip = loopback();
    let mut agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", FAMILY_PY).commit("family");
    project
        .deployctl(&fast_run_args(ENV, "adopt", &repo.url(), &[]))
        .ok();
    let v = family(&agent);
    let started = descendants(&v);
    agent.kill9();
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .stderr()
            .contains("adopted")),
        "the app is re-adopted"
    );
    assert_eq!(family(&agent)["pid"], v["pid"], "the same process serves");
    assert!(started.iter().all(|p| pid_alive(*p)), "{v}");
    project.deployctl(&["remove", "adopt"]).ok();
    assert_all_gone("remove after re-adoption", &started);
}

#[test]
fn orphans_of_an_app_are_reaped_by_the_agent() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", FAMILY_PY).commit("family");
    project
        .deployctl(&fast_run_args(ENV, "orph", &repo.url(), &[]))
        .ok();
    let v = family(&agent);
    let short = v["short_orphan"].as_u64().unwrap() as u32;
    let agent_pid = agent.pid().expect("the agent runs");
    // While it runs it is the agent's child; once it exits it does not stay a zombie.
    let parent = ppid(short);
    assert!(
        parent.is_none() || parent == Some(agent_pid),
        "the orphan's parent is {parent:?}, not the agent {agent_pid}"
    );
    assert!(
        wait_until(Duration::from_secs(20), || !std::path::Path::new(&format!(
            "/proc/{short}"
        ))
        .exists()),
        "the orphan {short} stays a zombie: {:?}",
        fs::read_to_string(format!("/proc/{short}/stat"))
    );
}

/// Resident memory of a process (`VmRSS` in `/proc/PID/status`), in bytes.
fn rss(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

#[test]
fn memory_counts_each_process_once_not_each_thread() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", FAMILY_PY).commit("threads");
    project
        .deployctl(&fast_run_args(
            ENV,
            "threads",
            &repo.url(),
            &["--env-var", "APP_THREADS=10"],
        ))
        .ok();
    let v = family(&agent);
    let app = v["pid"].as_u64().unwrap() as u32;
    let threads = fs::read_dir(format!("/proc/{app}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(threads >= 11, "the app runs {threads} threads");
    let mut reported = 0;
    let mut real = 0;
    let short = v["short_orphan"].as_u64().unwrap_or(0) as u32;
    // Sampled every 2 s while the app's memory moves a little: polled until it agrees.
    let ok = wait_until(Duration::from_secs(20), || {
        let (_, status) = project.status_json("threads");
        reported = status["instances"][0]["memory_bytes"].as_u64().unwrap_or(0);
        // Every process of the app: the server and the sleeps it started.
        real = [app, short]
            .into_iter()
            .chain(descendants(&v))
            .map(rss)
            .sum::<u64>();
        let ratio = reported as f64 / real.max(1) as f64;
        reported > 0 && (1.0 / 1.2..=1.2).contains(&ratio)
    });
    assert!(reported > 0, "no memory reported");
    let ratio = reported as f64 / real.max(1) as f64;
    eprintln!("{threads} threads: reported {reported} bytes, RSS sum {real} bytes ({ratio:.2}x)");
    assert!(
        ok,
        "reported {reported} bytes, the processes' RSS sum is {real} ({ratio:.2}x)"
    );
}
