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
    let fleet = Project::new();
    fleet
        .deployctl(&[
            "declare",
            "env",
            "agent",
            ENV,
            "--address",
            &a.address(),
            "--address",
            &b.address(),
        ])
        .ok();
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
