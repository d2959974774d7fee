//! The deploy journal: an agent killed (`kill -9`) in the middle of a redeploy or a restart
//! finishes or undoes exactly what was in flight when it starts again, so nothing of the
//! deployment runs that its record does not name.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deployctl_e2e::*;
use serde_json::Value;

/// Serves its pid. `SLOW_FLAG=path`: while that file exists, a new process waits a minute
/// before it listens (a release that never becomes healthy in time). `IGNORE_TERM=1`: it
/// ignores SIGTERM (only SIGKILL, after the kill timeout, stops it).
const APP: &str = r#"import os, signal, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
flag = os.environ.get("SLOW_FLAG", "")
if flag and os.path.exists(flag):
    time.sleep(60)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), H).serve_forever()
"#;

const ENV: &str = "journal";

/// `deployctl ARGS` in the background (it loses its agent when the test kills it).
fn background(project: &Project, args: &[&str]) -> Child {
    Command::new(deployctl_bin())
        .arg("--project")
        .arg(project.path())
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting deployctl")
}

fn record(agent: &Agent) -> Value {
    agent.record("app").expect("the deployment's record")
}

/// The pids the record's journal names as starting (a release or restart in flight).
fn starting(agent: &Agent) -> Vec<u32> {
    record(agent)["journal"]["starting"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["pid"].as_u64())
                .map(|p| p as u32)
                .collect()
        })
        .unwrap_or_default()
}

fn wait_gone(pids: &[u32], within: Duration) -> bool {
    wait_until(within, || pids.iter().all(|p| !pid_alive(*p)))
}

fn served_pid(agent: &Agent) -> Option<u32> {
    http_get(&agent.app_url(8000, "/"))
        .and_then(|(code, body)| (code == 200).then(|| body.trim().parse().ok()).flatten())
}

struct Setup {
    agent: Agent,
    project: Project,
    repo: GitRepo,
    flag: tempfile::TempDir,
    _ip: Loopback,
}

impl Setup {
    fn new() -> Setup {
        let ip = loopback();
        let agent = Agent::start(&ip);
        let project = Project::for_agent(ENV, &agent);
        let repo = GitRepo::new();
        repo.write("app.py", APP);
        repo.commit("app");
        Setup {
            agent,
            project,
            repo,
            flag: shared_dir(),
            _ip: ip,
        }
    }

    fn flag(&self) -> String {
        self.flag.path().join("slow").to_string_lossy().into_owned()
    }

    fn run(&self, extra: &[&str]) -> Output {
        let flag = format!("SLOW_FLAG={}", self.flag());
        let url = self.repo.url();
        let mut args = vec![
            "run",
            "app",
            "--repo",
            &url,
            "--command",
            "exec python3 app.py",
        ];
        args.extend_from_slice(&["--env-var", &flag, "--health-timeout", "90s"]);
        args.extend_from_slice(extra);
        self.project.deployctl(&args)
    }

    fn slow_from_now(&self) {
        std::fs::write(self.flag(), "slow").expect("writing the flag");
    }
}

#[test]
fn a_redeploy_killed_before_it_went_live_leaves_nothing_running() {
    let mut s = Setup::new();
    s.run(&["--replicas", "2"]).ok();
    let before = record(&s.agent);
    let serving = before["pid"].as_u64().expect("a recorded pid") as u32;

    s.slow_from_now();
    let flag = format!("SLOW_FLAG={}", s.flag());
    let url = s.repo.url();
    let mut deploy = background(
        &s.project,
        &[
            "run",
            "app",
            "--repo",
            &url,
            "--command",
            "python3 app.py",
            "--env-var",
            &flag,
            "--env-var",
            "V=2",
            "--replicas",
            "2",
            "--health-timeout",
            "90s",
        ],
    );
    let mut in_flight = Vec::new();
    let journaled = wait_until(Duration::from_secs(30), || {
        in_flight = starting(&s.agent);
        in_flight.len() == 2
    });
    assert!(
        journaled,
        "release 2's two processes in the journal: {}",
        record(&s.agent)
    );
    assert!(in_flight.iter().all(|p| pid_alive(*p)));
    s.agent.kill9();
    let _ = deploy.kill();
    let _ = deploy.wait();

    s.agent.restart();
    assert!(
        wait_gone(&in_flight, Duration::from_secs(20)),
        "the processes of release 2, which never went live, still run after the agent came back: {in_flight:?}\n{}",
        tail(&s.agent.stderr(), 30)
    );
    let release_2 = s.agent.deployment_dir("app").join("releases/2");
    let undone = wait_until(Duration::from_secs(10), || {
        record(&s.agent).get("journal").is_none() && !release_2.exists()
    });
    assert!(
        undone,
        "the journal is empty and release 2's directory gone: {}",
        record(&s.agent)
    );
    let after = record(&s.agent);
    assert_eq!(after["current"], 1, "{after}");
    assert_eq!(
        after["pid"].as_u64(),
        Some(serving as u64),
        "release 1 re-adopted"
    );
    assert!(pid_alive(serving));
    assert!(served_pid(&s.agent).is_some(), "release 1 serves");
    let _ = std::fs::remove_file(s.flag());
    // The next deploy works, and takes the next number.
    s.run(&["--replicas", "2", "--env-var", "V=3"]).ok();
    assert_eq!(record(&s.agent)["current"], 2);
}

#[test]
fn a_restart_killed_before_its_switch_keeps_the_process_that_serves() {
    let mut s = Setup::new();
    s.run(&[]).ok();
    let serving = record(&s.agent)["pid"].as_u64().expect("a recorded pid") as u32;
    assert_eq!(served_pid(&s.agent), Some(serving));

    s.slow_from_now();
    let mut restart = background(&s.project, &["restart", "app"]);
    let mut in_flight = Vec::new();
    let journaled = wait_until(Duration::from_secs(30), || {
        in_flight = starting(&s.agent);
        !in_flight.is_empty()
    });
    assert!(
        journaled,
        "the restart's process in the journal: {}",
        record(&s.agent)
    );
    assert_eq!(
        record(&s.agent)["pid"].as_u64(),
        Some(serving as u64),
        "the record names the process that serves, not the one starting"
    );
    s.agent.kill9();
    let _ = restart.kill();
    let _ = restart.wait();

    s.agent.restart();
    assert!(
        wait_gone(&in_flight, Duration::from_secs(20)),
        "the restart's new process still runs: {in_flight:?}"
    );
    assert!(pid_alive(serving), "the process that served was re-adopted");
    assert_eq!(record(&s.agent)["pid"].as_u64(), Some(serving as u64));
    assert!(
        wait_until(Duration::from_secs(10), || served_pid(&s.agent)
            == Some(serving)),
        "the node proxy routes to the process the record names"
    );
    let _ = std::fs::remove_file(s.flag());
}

#[test]
fn a_release_switched_away_from_is_stopped_by_the_agent_that_comes_back() {
    let mut s = Setup::new();
    let quick = [
        "--env-var",
        "IGNORE_TERM=1",
        "--kill-timeout",
        "4s",
        "--drain-timeout",
        "1s",
    ];
    s.run(&quick).ok();
    let old = record(&s.agent)["pid"].as_u64().expect("a recorded pid") as u32;

    let flag = format!("SLOW_FLAG={}", s.flag());
    let url = s.repo.url();
    let mut args = vec![
        "run",
        "app",
        "--repo",
        &url,
        "--command",
        "exec python3 app.py",
    ];
    args.extend_from_slice(&["--env-var", &flag, "--env-var", "V=2"]);
    args.extend_from_slice(&quick);
    let mut deploy = background(&s.project, &args);
    // Release 2 went live; release 1 ignores SIGTERM, so it lingers for the kill timeout.
    let switched = wait_until(Duration::from_secs(30), || record(&s.agent)["current"] == 2);
    assert!(switched, "release 2 went live: {}", record(&s.agent));
    s.agent.kill9();
    assert!(
        pid_alive(old),
        "killed the agent before it stopped release 1"
    );
    let _ = deploy.kill();
    let _ = deploy.wait();

    s.agent.restart();
    assert!(
        wait_gone(&[old], Duration::from_secs(20)),
        "release 1, switched away from, still runs after the agent came back (pid {old})"
    );
    assert_eq!(record(&s.agent)["current"], 2);
    assert!(
        wait_until(Duration::from_secs(5), || record(&s.agent)
            .get("journal")
            .is_none()),
        "the journal is empty once release 1 stopped: {}",
        record(&s.agent)
    );
    // Release 2 serves: its recorded process (an agent that came back during release 2's
    // deploy may have started it again) answers through the proxy.
    let serves = wait_until(Duration::from_secs(15), || {
        let pid = record(&s.agent)["pid"].as_u64().map(|p| p as u32);
        pid.is_some() && served_pid(&s.agent) == pid
    });
    assert!(
        serves,
        "release 2 serves: {:?} vs {}",
        served_pid(&s.agent),
        record(&s.agent)
    );
}
