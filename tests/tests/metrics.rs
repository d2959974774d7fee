//! `/metrics` parses as Prometheus (OpenMetrics) text and has what monitoring needs:
//! deployments by state, restarts, health-check latency, deploy step durations, and each
//! app's CPU and memory. The HTTP endpoints answer as load balancers expect. Prometheus
//! itself: `prometheus.rs`.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

#[test]
fn metrics_parse_and_cover_the_agent() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    // Before any deployment: the families are there, all states at 0.
    let m = scrape_metrics(&agent);
    assert_eq!(
        m["deploy_agent_deployments"].value("deploy_agent_deployments", ("state", "healthy")),
        Some(0.0)
    );

    let repo = GitRepo::new();
    repo.commit_app("measured", Some("v1"));
    project
        .run_app(
            ENV,
            "web",
            &repo.url(),
            "v1",
            &["--health-interval", "200ms"],
        )
        .ok();

    // Memory is sampled in the background (every 2 s) and health checks every 200 ms.
    let mut m = scrape_metrics(&agent);
    let sampled = wait_until(Duration::from_secs(15), || {
        m = scrape_metrics(&agent);
        let mem = m["deploy_agent_app_memory_bytes"]
            .value("deploy_agent_app_memory_bytes", ("deployment", "web"));
        let checks = m["deploy_agent_health_check_duration_seconds"].value(
            "deploy_agent_health_check_duration_seconds_count",
            ("deployment", "web"),
        );
        mem.unwrap_or(0.0) > 0.0 && checks.unwrap_or(0.0) >= 3.0
    });
    assert!(
        sampled,
        "no memory sample or health checks in /metrics: {m:#?}"
    );

    let by_state = &m["deploy_agent_deployments"];
    assert_eq!(by_state.kind, "gauge");
    assert_eq!(
        by_state.value("deploy_agent_deployments", ("state", "healthy")),
        Some(1.0)
    );
    assert_eq!(
        by_state.value("deploy_agent_deployments", ("state", "failed")),
        Some(0.0)
    );
    assert_eq!(
        m["deploy_agent_deployment_healthy"]
            .value("deploy_agent_deployment_healthy", ("deployment", "web")),
        Some(1.0)
    );
    let restarts = &m["deploy_agent_app_restarts"];
    assert_eq!(restarts.kind, "counter");
    let latency = &m["deploy_agent_health_check_duration_seconds"];
    assert_eq!(latency.kind, "histogram");
    assert!(latency
        .samples
        .iter()
        .any(|s| s.name.ends_with("_bucket")
            && s.labels.get("le").map(String::as_str) == Some("+Inf")));
    let steps = &m["deploy_agent_deploy_step_duration_seconds"];
    assert_eq!(steps.kind, "histogram");
    for step in ["resolve", "fetch", "checkout", "start", "health", "deploy"] {
        let count = steps.samples.iter().find(|s| {
            s.name.ends_with("_count")
                && s.labels.get("step").map(String::as_str) == Some(step)
                && s.labels.get("result").map(String::as_str) == Some("ok")
        });
        assert_eq!(count.map(|s| s.value), Some(1.0), "step {step}: {steps:#?}");
    }
    assert!(m["deploy_agent_app_cpu_percent"]
        .value("deploy_agent_app_cpu_percent", ("deployment", "web"))
        .is_some());

    // The HTTP endpoints.
    assert_eq!(
        http_get(&agent.http_url("/healthz")).map(|r| r.0),
        Some(200)
    );
    assert_eq!(http_get(&agent.http_url("/readyz")).map(|r| r.0), Some(200));
    let (code, body) = http_get(&agent.http_url("/deployments/web/health")).unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["state"], "healthy", "{v}");
    let (code, _) = http_get(&agent.http_url("/deployments/nope/health")).unwrap();
    assert_eq!(code, 404);

    // After remove, its series are gone and the state counts follow.
    project.deployctl(&["remove", "web"]).ok();
    let m = scrape_metrics(&agent);
    assert_eq!(
        m["deploy_agent_deployments"].value("deploy_agent_deployments", ("state", "healthy")),
        Some(0.0)
    );
    // (A family without series may be left out altogether.)
    assert!(m.get("deploy_agent_app_memory_bytes").is_none_or(|f| f
        .value("deploy_agent_app_memory_bytes", ("deployment", "web"))
        .is_none()));
}
