//! Behind a real HAProxy that health-checks each agent's `/deployments/NAME/health` and
//! does not retry (a refused connection is the client's failure): a fleet redeploy and
//! the removal of one agent's instance lose no request. The removal drains: the health
//! endpoint answers 503 while the instance still serves, HAProxy takes it out, then it
//! stops.

use deployctl_e2e::*;

const ENV: &str = "lb";

#[test]
fn a_fleet_redeploy_and_a_remove_behind_haproxy_lose_no_request() {
    let (a_lo, b_lo) = (loopback(), loopback());
    let a = Agent::start(&a_lo);
    let b = Agent::start(&b_lo);
    let fleet = Project::for_agents(ENV, &[&a, &b]);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    let slow = [
        "--env-var",
        "APP_SLOW_START=1",
        "--health-interval",
        "200ms",
    ];
    fleet.run_app(ENV, "web", &repo.url(), "v1", &slow).ok();
    let server = |name: &str, ip: &Loopback, agent: &Agent| Server {
        name: name.into(),
        app: format!("{ip}:8000"),
        agent_http: agent.http,
    };
    let lb = HaProxy::start("web", &[server("a", &a_lo, &a), server("b", &b_lo, &b)], 0);
    let load = Load::start(&lb.front());
    load.wait_for(20);

    // Both agents start the new release beside the old one and switch.
    repo.commit_app("two", Some("v2"));
    fleet
        .run_app(ENV, "web", &repo.url(), "v2", &slow)
        .ok()
        .mentions("new requests go to release 2");
    load.wait_for(20);

    // Removed from b alone (a project whose env is b): HAProxy is told first.
    let solo = Project::for_agent("solo", &b);
    solo.deployctl(&["remove", "web", "--drain", "1s"])
        .ok()
        .mentions("health endpoint answered 503 for");
    assert!(
        lb.status_of("b").starts_with("DOWN"),
        "HAProxy still sends to b: {:?}",
        lb.server_status()
    );
    load.wait_for(20);
    let seen = load.finish();
    assert!(
        seen.failed.is_empty(),
        "requests through HAProxy failed: {seen:?}\n--- haproxy log ---\n{}",
        lb.log()
    );
    assert_eq!(
        seen.markers.last().map(String::as_str),
        Some("two"),
        "{seen:?}"
    );
}

/// A load balancer's health checks, as a thread asking for the deployment's health
/// endpoint every 100 ms; what it saw, in order (status and state, when they changed).
struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Prober {
    fn start(url: String) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (s, n) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some((code, body)) = http_get(&url) {
                    let state = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["state"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let what = format!("{code} {state}");
                    let mut seen = n.lock().unwrap();
                    if seen.last() != Some(&what) {
                        seen.push(what);
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        Prober { stop, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_recreate_redeploy_drains_for_a_watching_load_balancer_and_a_remove_without_one_does_not_wait()
{
    let agent = Agent::start_with(&loopback(), "lb_drain = \"1s\"\n", &[]);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("one", Some("v1"));
    let recreate = ["--strategy", "recreate"];
    project
        .run_app(ENV, "web", &repo.url(), "v1", &recreate)
        .ok();

    let prober = Prober::start(agent.http_url("/deployments/web/health"));
    assert!(wait_until(std::time::Duration::from_secs(5), || prober
        .seen()
        .last()
        .is_some_and(|s| s == "200 healthy")));
    repo.commit_app("two", Some("v2"));
    project
        .run_app(ENV, "web", &repo.url(), "v2", &recreate)
        .ok()
        .mentions("draining release 1");
    // Healthy again once the new release is.
    assert!(
        wait_until(std::time::Duration::from_secs(5), || prober
            .seen()
            .last()
            .is_some_and(|s| s == "200 healthy")),
        "{:?}",
        prober.seen()
    );
    let seen = prober.seen();
    let draining = seen.iter().position(|s| s == "503 draining");
    assert!(
        draining.is_some(),
        "the balancer never saw it draining: {seen:?}"
    );
    assert_eq!(
        seen.first().map(String::as_str),
        Some("200 healthy"),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("200 healthy"),
        "{seen:?}"
    );

    // A deployment no load balancer checks is removed at once: nobody to drain for.
    project
        .run_app(ENV, "quiet", &repo.url(), "v2", &["--port", "8001"])
        .ok();
    let out = project.deployctl(&["remove", "quiet"]);
    out.ok();
    assert!(!out.stdout.contains("answered 503"), "{out}");
}
