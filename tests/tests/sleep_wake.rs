//! Sleep and wake: a deployment with `idle_timeout` that gets no request through the node
//! proxy for that long is stopped (no process, an empty cgroup, state sleeping) while its
//! port stays open; health checks and load balancers' probes never keep it awake; the
//! next request (and every one beside it) is answered by a freshly started app; a wake
//! that cannot start the app answers 503 with Retry-After and says why in `status`.

use std::time::{Duration, Instant};

use deployctl_e2e::*;
use serde_json::Value;

const ENV: &str = "e2e";

/// Answers `GET /` with its pid; exits at start when `$DATA_DIR/broken` exists.
const SLEEPY_PY: &str = r#"import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.path.exists(os.path.join(os.environ["DATA_DIR"], "broken")):
    print("cannot load the model: DATA_DIR/broken", flush=True)
    sys.exit(3)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else json.dumps({"pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A repository with the sleepy app, tagged v1.
fn sleepy_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("app.py", SLEEPY_PY);
    repo.commit("sleepy app");
    repo.tag("v1");
    repo
}

fn deployed(name: &str, idle: &str) -> (Agent, Project, GitRepo) {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = sleepy_repo();
    project
        .run_app(
            ENV,
            name,
            &repo.url(),
            "v1",
            &["--idle-timeout", idle, "--health-interval", "1s"],
        )
        .ok();
    (agent, project, repo)
}

fn state(project: &Project, name: &str) -> (String, String) {
    let (_, dep) = project.status_json(name);
    let i = &dep["instances"][0];
    let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
    (s("state"), s("message"))
}

/// Polls the load balancers' endpoint every 100 ms until the deployment sleeps (it must
/// not keep it awake), within `deadline`; its last answer.
fn sleeps_despite_probes(
    agent: &Agent,
    project: &Project,
    name: &str,
    deadline: Duration,
) -> Answer {
    let url = agent.http_url(&format!("/deployments/{name}/health"));
    let began = Instant::now();
    loop {
        let probe = http_get_with(&url, &[]).expect("the health endpoint answers");
        if state(project, name).0 == "sleeping" {
            return http_get_with(&url, &[]).expect("the health endpoint answers");
        }
        assert!(
            began.elapsed() < deadline,
            "not asleep after {deadline:?}: {:?}; last probe {probe:?}\n{}",
            state(project, name),
            tail(&agent.stderr(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pid_of(answer: &str) -> u64 {
    serde_json::from_str::<Value>(answer).map_or(0, |v| v["pid"].as_u64().unwrap_or(0))
}

/// Whether any process is left in the agent's instance cgroups.
fn cgroups_empty(agent: &Agent) -> bool {
    agent.instance_cgroups().iter().all(|dir| {
        std::fs::read_to_string(dir.join("cgroup.procs")).map_or(true, |p| p.trim().is_empty())
    })
}

#[test]
fn an_idle_app_sleeps_and_the_next_requests_wake_it() {
    let (agent, project, _repo) = deployed("sleepy", "3s");
    let url = agent.app_url(8000, "/");
    let (code, body) = http_get(&url).expect("it serves");
    assert_eq!(code, 200, "{body}");
    let first_pid = pid_of(&body);
    assert!(first_pid > 0, "{body}");

    // The agent's health checks (every second) and a load balancer's probes (every 100 ms)
    // do not count: it falls asleep.
    let lb = sleeps_despite_probes(&agent, &project, "sleepy", Duration::from_secs(30));
    assert_eq!(lb.status, 200, "a sleeping deployment can serve: {lb:?}");
    assert!(lb.body.contains("sleeping"), "{lb:?}");
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(first_pid as u32)),
        "its process is gone"
    );
    assert!(
        wait_until(Duration::from_secs(10), || cgroups_empty(&agent)),
        "its cgroup is empty: {:?}",
        agent.instance_cgroups()
    );
    let (_, message) = state(&project, "sleepy");
    assert!(message.contains("next request wakes it"), "{message}");

    // Four requests at once: every one is held while it wakes, then answered by the new app.
    let woken: Vec<(u16, String)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|_| s.spawn(|| http_get(&url).unwrap_or((0, "no answer".into()))))
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().unwrap_or((0, String::new())))
            .collect()
    });
    for (code, body) in &woken {
        assert_eq!(*code, 200, "{body}\n{}", tail(&agent.stderr(), 40));
        let pid = pid_of(body);
        assert!(pid > 0 && pid != first_pid, "a freshly started app: {body}");
    }
    let (state_now, _) = state(&project, "sleepy");
    assert_eq!(state_now, "healthy");
    let metrics = http_get(&agent.http_url("/metrics")).expect("metrics").1;
    assert!(
        metrics.contains("deploy_agent_wakes_total{deployment=\"sleepy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("deploy_agent_wake_duration_seconds_count{deployment=\"sleepy\"} 1"),
        "{metrics}"
    );

    // It sleeps again when idle, and `deployctl stop` of a sleeping deployment lets its
    // port go (no request wakes it).
    sleeps_despite_probes(&agent, &project, "sleepy", Duration::from_secs(30));
    assert!(metrics_after_sleep(&agent).contains("state=\"sleeping\"} 1"));
    project.deployctl(&["stop", "sleepy"]).ok();
    assert_eq!(state(&project, "sleepy").0, "stopped");
    assert!(http_get(&url).is_none_or(|(code, _)| code != 200));
}

fn metrics_after_sleep(agent: &Agent) -> String {
    http_get(&agent.http_url("/metrics")).expect("metrics").1
}

#[test]
fn a_wake_that_cannot_start_the_app_answers_503_with_retry_after() {
    let (agent, project, _repo) = deployed("broken", "2s");
    let (_, dep) = project.status_json("broken");
    let data_dir = dep["instances"][0]["data_dir"]
        .as_str()
        .or(dep["data_dir"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(!data_dir.is_empty(), "{dep}");
    sleeps_despite_probes(&agent, &project, "broken", Duration::from_secs(30));
    // What the app needs to start is gone while it sleeps.
    std::fs::write(std::path::Path::new(&data_dir).join("broken"), "1").expect("write");
    let answer = http_get_with(&agent.app_url(8000, "/"), &[]).expect("the proxy answers");
    assert_eq!(answer.status, 503, "{answer:?}");
    let retry: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(retry >= 1, "{answer:?}");
    assert!(answer.body.contains("wake failed"), "{answer:?}");
    let (state_now, message) = state(&project, "broken");
    assert_eq!(state_now, "sleeping", "{message}");
    assert!(message.contains("wake failed"), "{message}");
    // Meanwhile a request is answered at once, not held again.
    let began = Instant::now();
    let again = http_get_with(&agent.app_url(8000, "/"), &[]).expect("the proxy answers");
    assert_eq!(again.status, 503, "{again:?}");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
}

/// A redeploy (and `env set`) of a sleeping deployment checks the new release, then leaves
/// it sleeping; an agent that starts again leaves it sleeping, and the next request wakes
/// the new release.
#[test]
fn a_sleeping_deployment_stays_asleep_across_redeploys_and_agent_restarts() {
    let (mut agent, project, repo) = deployed("dozy", "2s");
    sleeps_despite_probes(&agent, &project, "dozy", Duration::from_secs(30));
    repo.write(
        "app.py",
        &SLEEPY_PY.replace("{\"pid\"", "{\"release\": 2, \"pid\""),
    );
    repo.commit("release 2");
    repo.tag("v2");
    project
        .run_app(ENV, "dozy", &repo.url(), "v2", &["--idle-timeout", "2s"])
        .ok()
        .mentions("health");
    // Checked, then asleep again without a request.
    sleeps_despite_probes(&agent, &project, "dozy", Duration::from_secs(20));
    project.deployctl(&["env", "set", "dozy", "MODE=fast"]).ok();
    sleeps_despite_probes(&agent, &project, "dozy", Duration::from_secs(20));

    agent.terminate();
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(20), || {
            http_get(&agent.http_url("/readyz")).is_some_and(|(c, _)| c == 200)
        }),
        "the agent is ready again"
    );
    assert_eq!(state(&project, "dozy").0, "sleeping");
    let (code, body) = http_get(&agent.app_url(8000, "/")).expect("it wakes");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"release\": 2"), "{body}");
    assert_eq!(state(&project, "dozy").0, "healthy");
}

/// While it sleeps its memory limit is free for another deployment; its wake then finds
/// no room (503 naming the field), and wakes once the room is back.
#[test]
fn a_sleeping_deployments_memory_is_free_for_others_and_its_wake_waits_for_room() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let nodes = project
        .deployctl(&["nodes", "--env", ENV, "--output", "json"])
        .json();
    let total_mib = nodes["nodes"][0]["memory_total_bytes"]
        .as_u64()
        .unwrap_or(0)
        >> 20;
    assert!(total_mib > 0, "{nodes}");
    let most = format!("{}M", total_mib * 6 / 10);
    let repo = sleepy_repo();
    project
        .run_app(
            ENV,
            "dozer",
            &repo.url(),
            "v1",
            &["--idle-timeout", "2s", "--memory", &most],
        )
        .ok();
    sleeps_despite_probes(&agent, &project, "dozer", Duration::from_secs(30));
    let promised = |p: &Project| {
        p.deployctl(&["nodes", "--env", ENV, "--output", "json"])
            .json()["nodes"][0]["memory_committed_bytes"]
            .as_u64()
            .unwrap_or(u64::MAX)
    };
    assert_eq!(
        promised(&project),
        0,
        "a sleeping deployment promises nothing"
    );
    project
        .run_app(
            ENV,
            "other",
            &repo.url(),
            "v1",
            &["--port", "8001", "--memory", &most],
        )
        .ok();

    let answer = http_get_with(&agent.app_url(8000, "/"), &[]).expect("the proxy answers");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("resources.memory"), "{answer:?}");
    assert!(answer.header("retry-after").is_some(), "{answer:?}");
    assert_eq!(state(&project, "dozer").0, "sleeping");

    project.deployctl(&["remove", "other"]).ok();
    assert!(
        wait_until(Duration::from_secs(40), || {
            http_get(&agent.app_url(8000, "/")).is_some_and(|(code, _)| code == 200)
        }),
        "it wakes once the room is back: {:?}",
        state(&project, "dozer")
    );
}
