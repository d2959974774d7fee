//! A real HAProxy in front of two agents' instances of one deployment, health-checking each
//! through its agent's `GET /deployments/NAME/health` (`option httpchk`). When one instance
//! turns unhealthy, HAProxy marks it down and requests keep succeeding on the other.
//!
//! Needs Debian's `haproxy` (scripts/test.sh installs it); without it the test fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "lb";

#[test]
fn haproxy_routes_around_an_unhealthy_instance() {
    let (a_lo, b_lo) = (loopback(), loopback());
    let a = Agent::start(&a_lo);
    let b = Agent::start(&b_lo);
    let project = Project::for_agents(ENV, &[&a, &b]);
    let flags = shared_dir();
    // Each instance looks for its own file: only b's is created.
    let sick_pattern = flags.path().join("sick-{PUBLIC_HOST}");
    let sick = flags.path().join(format!("sick-{b_lo}"));
    let repo = GitRepo::new();
    repo.commit_app("balanced", Some("v1"));
    project
        .run_app(
            ENV,
            "web",
            &repo.url(),
            "v1",
            &[
                "--health-interval",
                "300ms",
                "--restart",
                "never",
                "--env-var",
                &format!("APP_HEALTH_FILE={}", sick_pattern.display()),
            ],
        )
        .ok();

    let lb = HaProxy::start(
        "web",
        &[
            Server {
                name: "a".into(),
                app: format!("{a_lo}:8000"),
                agent_http: a.http,
            },
            Server {
                name: "b".into(),
                app: format!("{b_lo}:8000"),
                agent_http: b.http,
            },
        ],
        3,
    );
    let front = lb.front();
    // Which agent answered: the app's public URL names it.
    let hosts: Vec<String> = (0..6)
        .filter_map(|_| get_json(&front).and_then(|v| v["url"].as_str().map(String::from)))
        .collect();
    let on = |ip: &Loopback| format!("http://{ip}:8000");
    assert!(
        hosts.iter().any(|h| *h == on(&a_lo)) && hosts.iter().any(|h| *h == on(&b_lo)),
        "HAProxy balances over both: {hosts:?}"
    );

    // Requests through HAProxy, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, front) = (stop.clone(), front.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match http_get(&front) {
                    Some((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };

    // Make b's instance unhealthy: its agent sees it, its health endpoint says 503.
    std::fs::write(&sick, "").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || lb
            .status_of("b")
            .starts_with("DOWN")),
        "HAProxy did not mark b DOWN: {:?}; b says {:?}",
        lb.server_status(),
        http_get(&b.http_url("/deployments/web/health"))
    );
    let (code, body) = http_get(&b.http_url("/deployments/web/health")).unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"healthy\":false"), "{body}");
    assert_eq!(lb.status_of("a"), "UP");
    let hosts: Vec<String> = (0..6)
        .filter_map(|_| get_json(&front).and_then(|v| v["url"].as_str().map(String::from)))
        .collect();
    assert_eq!(hosts.len(), 6, "every request answered");
    assert!(
        hosts.iter().all(|h| *h == on(&a_lo)),
        "only a serves now: {hosts:?}"
    );

    // Healthy again: back UP.
    std::fs::remove_file(&sick).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || lb.status_of("b") == "UP"),
        "b did not come back UP: {:?}",
        lb.server_status()
    );
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = client.join().unwrap();
    assert!(
        failed.is_empty(),
        "requests through HAProxy failed: {failed:?} ({ok} ok)"
    );
    assert!(ok > 20, "only {ok} requests went through");
}
