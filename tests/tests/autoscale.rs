//! Replicas that follow the load: `replicas: {min: 1, max: 3, target_in_flight: 1}` on an
//! app that takes 200 ms per request grows to 3 replicas under 6 concurrent clients and
//! goes back to 1 (drained, one at a time) once the load is light, with not one client
//! request failing across either change; every scaling is an event in `status` and counted
//! in `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// Clients that each call a URL in a loop (a pause between calls), every answer counted.
struct Clients {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<(usize, Vec<String>)>>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(url: &str, n: usize, pause: Duration) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new((0, Vec::new())));
        let threads = (0..n)
            .map(|_| {
                let (stop, counts, url) = (stop.clone(), counts.clone(), url.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let answer = http_get_or_why(&url);
                        let mut c = counts.lock().unwrap();
                        match answer {
                            Ok((200, body)) if body.contains("\"slow\"") => c.0 += 1,
                            other => c.1.push(format!("{other:?}")),
                        }
                        drop(c);
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Clients {
            stop,
            counts,
            threads,
        }
    }

    /// (answered, failed) so far.
    /// Asserts that `n` more requests are answered within 30 s (`when`: for the message).
    fn goes_on(&self, n: usize, when: &str) {
        let before = self.counts().0;
        assert!(
            wait_until(Duration::from_secs(30), || self.counts().0 >= before + n),
            "the load stalled {when}: {:?}",
            self.counts()
        );
    }

    fn counts(&self) -> (usize, Vec<String>) {
        self.counts.lock().unwrap().clone()
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        self.counts()
    }
}

/// `running_replicas`, the instances' pids and the scale events from `status --output json`.
fn scaling(project: &Project) -> (u64, Vec<u64>, Vec<serde_json::Value>) {
    let (_, dep) = project.status_json("slow");
    let i = &dep["instances"][0];
    let pids = match i["replicas"].as_array() {
        Some(r) if !r.is_empty() => r.iter().filter_map(|r| r["pid"].as_u64()).collect(),
        _ => i["pid"].as_u64().into_iter().collect(),
    };
    let events = i["scale_events"].as_array().cloned().unwrap_or_default();
    (i["running_replicas"].as_u64().unwrap_or(0), pids, events)
}

/// `slow.deploy.yaml`: the standard app answering after 200 ms, with replicas 1..3 that
/// follow the load (target 1 in flight each, up after 2 s, down after `down_after`).
fn declare_slow(project: &Project, repo: &GitRepo, down_after: &str) {
    project.write(
        "slow.deploy.yaml",
        &format!(
            "env: {ENV}\nrepo: {}\nref: v1\ncommand: python3 app.py\nport: 8000\n\
             env_vars: {{APP_DELAY_MS: 200}}\nhealth: {{path: /health, interval: 1s}}\n\
             replicas: {{min: 1, max: 3, target_in_flight: 1, scale_up_after: 2s, \
             scale_down_after: {down_after}}}\n",
            repo.url()
        ),
    );
}

#[test]
fn replicas_grow_under_load_and_shrink_after_it_with_no_request_failing() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    // The standard app, each answer after 200 ms.
    repo.commit_app("slow", Some("v1"));
    // Short windows keep the test fast: up after 2 s above the target, down after 3 s.
    declare_slow(&project, &repo, "3s");
    project.deployctl(&["run", "slow"]).ok();
    let (running, _, events) = scaling(&project);
    assert_eq!(running, 1, "min 1 to start with");
    assert!(events.is_empty(), "{events:?}");
    let (_, dep) = project.status_json("slow");
    assert_eq!(dep["instances"][0]["autoscale"]["max"], 3, "{dep}");

    // 6 clients, each with a request of 200 ms in flight at almost any time: ~6 per
    // replica, target 1 → 3 (the max) in one step.
    let url = agent.app_url(8000, "/");
    let busy = Clients::start(&url, 6, Duration::ZERO);
    let mut seen = (0, Vec::new(), Vec::new());
    assert!(
        wait_until(Duration::from_secs(90), || {
            seen = scaling(&project);
            seen.0 == 3 && seen.1.len() == 3 && !seen.2.is_empty()
        }),
        "did not grow to 3 replicas: {seen:?}\n{}",
        tail(&agent.stderr(), 30)
    );
    let grown_pids = seen.1.clone();
    let up = seen.2.last().cloned().unwrap_or_default();
    assert_eq!(
        (up["from"].as_u64(), up["to"].as_u64()),
        (Some(1), Some(3)),
        "{up}"
    );
    let text = up["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("scaled 1 → 3: ")
            && text.contains("requests in flight per replica over 2 s, target 1"),
        "{text}"
    );
    // The three serve while the load goes on.
    busy.goes_on(60, "while 3 serve");
    project
        .deployctl(&["status", "slow"])
        .ok()
        .mentions("replicas follow the load: 3 running (1..3, target 1 in flight each")
        .mentions("scaled 1 → 3");
    // A redeploy under load starts the new release with the 3 that run, not the min.
    repo.write("README", "v2");
    repo.commit("v2");
    repo.tag("v2");
    project
        .deployctl(&["run", "slow", "--ref", "v2"])
        .ok()
        .mentions("3 replicas: pids");
    let (running, pids, _) = scaling(&project);
    assert_eq!((running, pids.len()), (3, 3), "{pids:?}");
    assert!(
        pids.iter().all(|p| !grown_pids.contains(p)),
        "{pids:?} vs {grown_pids:?}"
    );
    let grown_pids = pids;
    let (answered, failed) = busy.finish();
    assert!(
        failed.is_empty(),
        "{} of {answered} failed: {failed:?}",
        failed.len()
    );

    // A light load (one client, pauses between calls): down one at a time to 1, each
    // replica drained, with not one request failing.
    let light = Clients::start(&url, 1, Duration::from_millis(300));
    assert!(
        wait_until(Duration::from_secs(90), || {
            seen = scaling(&project);
            seen.0 == 1 && seen.2.last().is_some_and(|e| e["to"] == 1)
        }),
        "did not go back to 1 replica: {seen:?}\n{}",
        tail(&agent.stderr(), 30)
    );
    let (answered_light, failed) = light.finish();
    assert!(answered_light > 0);
    assert!(
        failed.is_empty(),
        "{} of {answered_light} failed: {failed:?}",
        failed.len()
    );
    let downs: Vec<(u64, u64)> = seen
        .2
        .iter()
        .filter_map(|e| Some((e["from"].as_u64()?, e["to"].as_u64()?)))
        .filter(|(f, t)| t < f)
        .collect();
    assert_eq!(downs, [(3, 2), (2, 1)], "{:?}", seen.2);
    for pid in grown_pids.iter().filter(|p| !seen.1.contains(p)) {
        assert!(
            wait_until(Duration::from_secs(10), || !pid_alive(*pid as u32)),
            "removed replica {pid} still runs"
        );
    }
    let metrics = http_get(&agent.http_url("/metrics"))
        .map(|(_, b)| b)
        .unwrap_or_default();
    for want in [
        "deploy_agent_replicas{deployment=\"slow\"} 1",
        "deploy_agent_scale_events_total{deployment=\"slow\",direction=\"up\"} 1",
        "deploy_agent_scale_events_total{deployment=\"slow\",direction=\"down\"} 2",
    ] {
        assert!(metrics.contains(want), "{want} missing in\n{metrics}");
    }
    // Scaling is not a release: the history has the two deploys only.
    assert_eq!(project.history("slow").len(), 2);
}

#[test]
fn an_agent_killed_after_scaling_adopts_the_replicas_it_scaled_to() {
    let mut agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("slow", Some("v1"));
    // A cool-down longer than the test: it stays at what it scaled to.
    declare_slow(&project, &repo, "10m");
    project.deployctl(&["run", "slow"]).ok();
    let url = agent.app_url(8000, "/");
    let busy = Clients::start(&url, 6, Duration::ZERO);
    let mut seen = (0, Vec::new(), Vec::new());
    assert!(
        wait_until(Duration::from_secs(90), || {
            seen = scaling(&project);
            seen.0 == 3 && seen.1.len() == 3
        }),
        "did not grow to 3 replicas: {seen:?}"
    );
    let before = seen.1.clone();
    agent.kill9();
    agent.restart();
    assert!(
        wait_until(Duration::from_secs(30), || {
            seen = scaling(&project);
            seen.0 == 3 && seen.1 == before
        }),
        "the 3 replicas {before:?} were not adopted: {seen:?}"
    );
    busy.goes_on(30, "after the restart");
    let (_, failed) = busy.finish();
    assert!(failed.is_empty(), "{failed:?}");
    let record = agent.record("slow").unwrap_or_default();
    assert_eq!(
        record["replicas"].as_array().map(Vec::len),
        Some(2),
        "{record}"
    );
    assert!(
        record.get("journal").is_none(),
        "nothing in flight: {record}"
    );
}

/// `min: 0`: with no request for `scale_down_after` the last replica goes and the
/// deployment sleeps; the next request wakes it with one replica.
#[test]
fn replicas_with_min_zero_scale_to_zero_and_the_next_request_wakes_one() {
    let agent = Agent::start(&loopback());
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("zero", Some("v1"));
    project.write(
        "zero.deploy.yaml",
        &format!(
            "env: {ENV}\nrepo: {}\nref: v1\ncommand: python3 app.py\nport: 8000\n\
             health: {{path: /health, interval: 1s}}\n\
             replicas: {{min: 0, max: 2, target_in_flight: 1, scale_down_after: 2s}}\n",
            repo.url()
        ),
    );
    project.deployctl(&["run", "--load", "zero"]).ok();
    let state = |p: &Project| {
        let (_, dep) = p.status_json("zero");
        dep["instances"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        wait_until(Duration::from_secs(30), || state(&project) == "sleeping"),
        "scaled to zero: {}",
        state(&project)
    );
    let (_, dep) = project.status_json("zero");
    assert_eq!(dep["instances"][0]["running_replicas"], 0, "{dep}");
    let (code, body) = http_get(&agent.app_url(8000, "/")).expect("it wakes");
    assert_eq!(code, 200, "{body}");
    let (_, dep) = project.status_json("zero");
    assert_eq!(dep["instances"][0]["running_replicas"], 1, "{dep}");
}
