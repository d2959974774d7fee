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

/// On SIGTERM the main thread exits (`pthread_exit`: the process's leader becomes a zombie)
/// while a non-daemon thread keeps the listening socket open for 200 ms more, then closes it
/// and ends the process. Like Gradio and other multi-threaded servers, whose main thread is
/// gone a few ms before the threads that hold the socket.
const LINGERING_PY: &str = r#"import ctypes, os, signal, socket, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ.get("MARK", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

server = HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()

def linger():
    time.sleep(0.2)
    server.socket.close()
    os._exit(0)

def term(*_):
    threading.Thread(target=linger).start()
    ctypes.CDLL(None).pthread_exit(None)

signal.signal(signal.SIGTERM, term)
print("lingering app listening", flush=True)
while True:
    time.sleep(1)
"#;

fn deploy_args<'a>(name: &'a str, repo: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        name,
        "--env",
        ENV,
        "--repo",
        repo,
        "--command",
        "python3 app.py",
        "--port",
        "8000",
        "--health-timeout",
        "120s",
        "--health-interval",
        "1s",
    ];
    args.extend_from_slice(extra);
    args
}

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
    project.deployctl(&deploy_args("fam", &url, &restart)).ok();
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
    project.deployctl(&deploy_args("fam", &url, &restart)).ok();
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
        .deployctl(&deploy_args("adopt", &repo.url(), &[]))
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
        .deployctl(&deploy_args("orph", &repo.url(), &[]))
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
        .deployctl(&deploy_args(
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

/// Redeploys (new commits, same port) `n` times; every one must succeed.
fn redeploy_loop(
    project: &Project,
    repo: &GitRepo,
    name: &str,
    file: &str,
    n: usize,
    extra: &[&str],
) {
    let url = repo.url();
    for i in 0..n {
        repo.write("app.py", &file.replace("__MARK__", &format!("r{i}")))
            .commit(&format!("redeploy {i}"));
        let out = project.deployctl_timeout(&deploy_args(name, &url, extra), INSTALL_TIMEOUT);
        let all = out.all();
        assert!(
            !all.contains("foreign")
                && !all.contains("does not manage")
                && !all.contains("cannot see"),
            "redeploy {i}: our own exiting release was taken for a foreign process:\n{all}"
        );
        out.ok();
    }
}

#[test]
fn a_release_whose_threads_outlive_its_main_thread_is_waited_for() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let app = LINGERING_PY.replace("os.environ.get(\"MARK\", \"\")", "\"__MARK__\"");
    redeploy_loop(&project, &repo, "linger", &app, 5, &[]);
    let served = http_get(&agent.app_url(8000, "/")).expect("the last release answers");
    assert!(served.1.contains("r4"), "{served:?}");
}

/// Gradio, from PyPI: its main thread exits on SIGTERM a few ms before the threads that
/// hold its socket.
const GRADIO_PY: &str = r#"import os
import gradio as gr

def greet(name):
    return "__MARK__ " + name

demo = gr.Interface(fn=greet, inputs="text", outputs="text")
demo.launch(server_name=os.environ["HOST"], server_port=int(os.environ["PORT"]))
"#;

#[test]
fn gradio_warm_redeploys_all_succeed() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    let extra = [
        "--pip",
        "gradio",
        "--env-var",
        "GRADIO_ANALYTICS_ENABLED=False",
    ];
    // The first deploy builds the environment; then five warm redeploys in a row.
    redeploy_loop(&project, &repo, "gradio", GRADIO_PY, 6, &extra);
    let page = http_get(&agent.app_url(8000, "/")).expect("gradio answers");
    assert_eq!(page.0, 200, "{page:?}");
}

/// The app's server is a daemonized child (its own session) listening on the wrong port.
const DAEMON_WRONG_PORT_PY: &str = r#"import os, subprocess, sys, time
server = "import http.server, os; http.server.HTTPServer((os.environ['HOST'], int(os.environ['PORT']) + 1), http.server.BaseHTTPRequestHandler).serve_forever()"
subprocess.Popen([sys.executable, "-c", server], start_new_session=True)
while True:
    time.sleep(1)
"#;

/// ... and it fails within seconds, not after the 2-minute health timeout.
#[test]
fn a_failed_start_names_where_a_daemonized_server_listens() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.write("app.py", DAEMON_WRONG_PORT_PY)
        .commit("wrong port");
    let url = repo.url();
    let args = deploy_args("wrong", &url, &[]);
    assert!(args.contains(&"120s"), "{args:?}");
    let began = std::time::Instant::now();
    let out = project.deployctl(&args);
    out.expect_code(1);
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "the deploy took {:?} to fail",
        began.elapsed()
    );
    // Its private port (behind the node proxy) is what the health check connected to.
    let port: u16 = out
        .stdout
        .split(&format!("TCP connect to {}:", agent.ip))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no health target in the output\n{out}"));
    out.mentions(&format!(
        "the app listens on {}:{} instead",
        agent.ip,
        port + 1
    ));
}
