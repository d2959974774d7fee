use super::*;

#[test]
fn encodes_every_family() {
    let m = Metrics::new();
    m.health_checked("api", Duration::from_millis(3));
    m.restarted("api");
    m.step_finished("fetch", true, Duration::from_millis(40));
    m.scaled("api", "up");
    // A run that ended by an OOM kill, then a sample of it that came late.
    let killed = crate::limits::Stats {
        oom_kills: 1,
        ..Default::default()
    };
    m.kernel("api", "k/api@3.0", &killed);
    m.kernel("api", "k/api@3.0", &crate::limits::Stats::default());
    let mut counts = crate::proxy::Counts {
        by_class: [0, 9, 0, 0, 1],
        latency: vec![0; 15],
        latency_sum_us: 50_000,
        bytes_in: 10,
        bytes_out: 2048,
        connections: 0,
    };
    counts.latency[3] = 10;
    let text = m.encode(
        &[Present {
            deployment: "api".into(),
            state: "healthy",
            cpu_percent: 1.5,
            memory_bytes: 1024,
            memory_limit: Some(64 << 20),
            live_runs: vec![(
                "k/api@3.1".into(),
                crate::limits::Stats {
                    throttled_periods: 4,
                    throttled_usec: 250_000,
                    ..Default::default()
                },
            )],
            replicas: 3,
        }],
        vec![Served {
            deployment: "api".into(),
            releases: vec![(3, counts.clone(), 2)],
            totals: counts,
            unavailable: 1,
        }],
    );
    for want in [
        "deploy_agent_deployments{state=\"healthy\"} 1",
        "deploy_agent_deployments{state=\"failed\"} 0",
        "deploy_agent_deployment_healthy{deployment=\"api\"} 1",
        "deploy_agent_app_restarts_total{deployment=\"api\"} 1",
        "deploy_agent_health_check_duration_seconds_count{deployment=\"api\"} 1",
        "deploy_agent_deploy_step_duration_seconds_count{step=\"fetch\",result=\"ok\"} 1",
        "deploy_agent_app_cpu_percent{deployment=\"api\"} 1.5",
        "deploy_agent_app_memory_bytes{deployment=\"api\"} 1024",
        "deploy_agent_app_memory_limit_bytes{deployment=\"api\"} 67108864",
        "deploy_agent_app_oom_kills_total{deployment=\"api\"} 1",
        "deploy_agent_app_cpu_throttled_periods_total{deployment=\"api\"} 4",
        "deploy_agent_app_cpu_throttled_seconds_total{deployment=\"api\"} 0.25",
        "deploy_agent_proxy_requests_total{deployment=\"api\",release=\"3\",class=\"2xx\"} 9",
        "deploy_agent_proxy_requests_total{deployment=\"api\",release=\"3\",class=\"5xx\"} 1",
        "deploy_agent_proxy_request_duration_seconds_bucket{le=\"0.005\",deployment=\"api\",release=\"3\"} 10",
        "deploy_agent_proxy_request_duration_seconds_count{deployment=\"api\",release=\"3\"} 10",
        "deploy_agent_proxy_in_flight_requests{deployment=\"api\",release=\"3\"} 2",
        "deploy_agent_proxy_bytes_total{deployment=\"api\",direction=\"from_app\"} 2048",
        "deploy_agent_proxy_unavailable_total{deployment=\"api\"} 1",
        "deploy_agent_replicas{deployment=\"api\"} 3",
        "deploy_agent_scale_events_total{deployment=\"api\",direction=\"up\"} 1",
        "# EOF",
    ] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }
}

#[test]
fn throttling_is_a_running_total_over_restarts() {
    let m = Metrics::new();
    let at = |periods, usec| crate::limits::Stats {
        throttled_periods: periods,
        throttled_usec: usec,
        ..Default::default()
    };
    m.kernel("api", "k/api@1.a", &at(10, 1_000_000));
    m.kernel("api", "k/api@1.a", &at(30, 2_000_000));
    // A restart: the new groups start at 0 again; the total goes on from 30.
    m.kernel("api", "k/api@1.b", &at(5, 500_000));
    // An older figure of the first run is not counted again.
    m.kernel("api", "k/api@1.a", &at(20, 1_500_000));
    let label = Metrics::label("api");
    assert_eq!(m.throttled_periods.get_or_create(&label).get(), 35);
    assert!((m.throttled_seconds.get_or_create(&label).get() - 2.5).abs() < 1e-9);
}
