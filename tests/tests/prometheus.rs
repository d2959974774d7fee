//! Prometheus' own checker (`promtool check metrics`) accepts the agent's text format, and
//! a real Prometheus server scrapes the agent (asking for OpenMetrics) and reads the
//! figures back.

use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// `promtool check metrics` on what the agent answers a scraper that asks for nothing in
/// particular: the Prometheus text format 0.0.4. `Err` holds promtool's complaints.
fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    let bin = require_tool(
        "promtool",
        "Debian's prometheus package (scripts/test.sh installs it)",
    );
    let mut child = std::process::Command::new(bin)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool ({}): {said}", out.status))
    }
}

/// A real Prometheus server on a loopback address of the test's own, scraping one target
/// every 200 ms; killed (by pid) and reaped when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(ip: &str, target: std::net::SocketAddr) -> Prometheus {
        let bin = require_tool(
            "prometheus",
            "Debian's prometheus package (scripts/test.sh installs it)",
        );
        let dir = tempfile::tempdir().expect("a directory for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: deploy-agent\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("writing prometheus.yml");
        let listen = format!("{ip}:9090");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = std::process::Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        Prometheus {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The API's `data` for `path`, when it answers with status success.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let v = get_json(&format!("{}{path}", self.url))?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The single value of an instant query, when it has exactly one series.
    fn query(&self, promql: &str) -> Option<f64> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let data = self.api(&format!("/api/v1/query?query={q}"))?;
        let result = data["result"].as_array()?;
        if result.len() != 1 {
            return None;
        }
        result[0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn promtool_accepts_the_metrics_and_a_real_prometheus_scrapes_them() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let project = Project::for_agent(ENV, &agent);
    let repo = GitRepo::new();
    repo.commit_app("scraped", Some("v1"));
    project
        .run_app(
            ENV,
            "web",
            &repo.url(),
            "v1",
            &["--health-interval", "200ms"],
        )
        .ok();
    // Every family present: restarts, health checks and a CPU/memory sample (every 2 s).
    assert!(
        wait_until(Duration::from_secs(15), || {
            let m = scrape_metrics(&agent);
            m.get("deploy_agent_app_memory_bytes").is_some_and(|f| {
                f.value("deploy_agent_app_memory_bytes", ("deployment", "web"))
                    .unwrap_or(0.0)
                    > 0.0
            })
        }),
        "no memory sample in /metrics"
    );
    // Requests through the node proxy: counted by release and class, with a latency
    // histogram (the agent samples the proxy every 2 s).
    for _ in 0..5 {
        assert_eq!(http_get(&agent.app_url(8000, "/")).map(|r| r.0), Some(200));
    }
    let mut m = scrape_metrics(&agent);
    assert!(
        wait_until(Duration::from_secs(10), || {
            m = scrape_metrics(&agent);
            m.get("deploy_agent_proxy_requests").is_some_and(|f| {
                f.samples.iter().any(|s| {
                    s.labels.get("deployment").map(String::as_str) == Some("web")
                        && s.labels.get("release").map(String::as_str) == Some("1")
                        && s.labels.get("class").map(String::as_str) == Some("2xx")
                        && s.value >= 5.0
                })
            })
        }),
        "no proxy requests in /metrics: {m:#?}"
    );
    assert_eq!(m["deploy_agent_proxy_requests"].kind, "counter");
    assert_eq!(
        m["deploy_agent_proxy_request_duration_seconds"].kind,
        "histogram"
    );
    assert_eq!(m["deploy_agent_proxy_in_flight_requests"].kind, "gauge");
    assert!(
        m["deploy_agent_proxy_bytes"]
            .value("deploy_agent_proxy_bytes_total", ("direction", "from_app"))
            .unwrap_or(0.0)
            > 0.0
    );

    // No Accept header (curl, older scrapers): the text format, which promtool accepts.
    let plain = http_get_with(&agent.http_url("/metrics"), &[]).expect("/metrics answers");
    assert_eq!(plain.status, 200);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        plain.head
    );
    assert!(!plain.body.contains("# EOF"), "{}", plain.body);
    assert!(
        plain
            .body
            .contains("# TYPE deploy_agent_app_restarts_total counter"),
        "{}",
        plain.body
    );
    promtool_check(&plain.body).unwrap_or_else(|e| panic!("{e}\n{}", plain.body));
    let explicit = http_get_with(
        &agent.http_url("/metrics"),
        &[("Accept", "text/plain;version=0.0.4")],
    )
    .expect("/metrics answers");
    promtool_check(&explicit.body).unwrap_or_else(|e| panic!("{e}\n{}", explicit.body));

    // Asked for OpenMetrics (as Prometheus does): OpenMetrics. promtool 2.42 lints the text
    // format only (OpenMetrics' `x` counter family with its `x_total` sample reads as a
    // sample without HELP there), so the OpenMetrics text is checked by the real
    // Prometheus below, whose scrape fails on any OpenMetrics it cannot parse.
    let om = http_get_with(
        &agent.http_url("/metrics"),
        &[("Accept", PROMETHEUS_ACCEPT)],
    )
    .expect("/metrics answers");
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{}",
        om.head
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);

    let prom_ip = loopback();
    let prometheus = Prometheus::start(&prom_ip, agent.http);
    let up = wait_until(Duration::from_secs(60), || {
        prometheus
            .api("/api/v1/targets")
            .and_then(|d| d["activeTargets"].as_array().cloned())
            .is_some_and(|t| t.len() == 1 && t[0]["health"] == "up")
    });
    assert!(
        up,
        "Prometheus did not scrape the agent: {:?}\n{}",
        prometheus.api("/api/v1/targets"),
        prometheus.log()
    );
    let mut read = (None, None);
    let got = wait_until(Duration::from_secs(30), || {
        read = (
            prometheus.query("deploy_agent_deployments{state=\"healthy\"}"),
            prometheus.query("deploy_agent_app_restarts_total{deployment=\"web\"}"),
        );
        read == (Some(1.0), Some(0.0))
    });
    assert!(
        got,
        "read back from Prometheus: {read:?}\n{}",
        prometheus.log()
    );
}
