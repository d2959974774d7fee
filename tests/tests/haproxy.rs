//! A real HAProxy in front of two agents' instances of one deployment, health-checking each
//! through its agent's `GET /deployments/NAME/health` (`option httpchk`). When one instance
//! turns unhealthy, HAProxy marks it down and requests keep succeeding on the other.
//!
//! Needs Debian's `haproxy` (scripts/test.sh installs it); without it the test fails.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "lb";

/// HAProxy's own loopback address (its frontend on :8080, its stats page on :8081).
fn lb_ip() -> &'static Loopback {
    static IP: std::sync::OnceLock<Loopback> = std::sync::OnceLock::new();
    IP.get_or_init(loopback)
}

/// HAProxy in the foreground; killed (and reaped) when dropped.
struct HaProxy(Child);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The status (UP, DOWN, ...) of each server of backend `app`, from HAProxy's CSV stats.
fn server_status() -> Vec<(String, String)> {
    let Some((200, body)) = http_get(&format!("http://{}:8081/stats;csv", lb_ip())) else {
        return vec![];
    };
    let csv = dechunk(&body);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
        return vec![];
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.get(px) == Some(&"app") && !matches!(f.get(sv), Some(&"FRONTEND" | &"BACKEND"))
        })
        .map(|f| (f[sv].to_string(), f.get(st).unwrap_or(&"").to_string()))
        .collect()
}

/// HAProxy answers the stats page chunked even to HTTP/1.0: join the chunks.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string(); // not chunked
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn status_of(server: &str) -> String {
    server_status()
        .into_iter()
        .find(|(s, _)| s == server)
        .map(|(_, st)| st)
        .unwrap_or_default()
}

#[test]
fn haproxy_routes_around_an_unhealthy_instance() {
    let haproxy = require_tool(
        "haproxy",
        "Debian's haproxy package (scripts/test.sh installs it)",
    );
    let (a_lo, b_lo) = (loopback(), loopback());
    let a = Agent::start(&a_lo);
    let b = Agent::start(&b_lo);
    let project = Project::new();
    project
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
    let flags = tempfile::tempdir().unwrap();
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

    let cfg = flags.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 256\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n  retries 3\n  option redispatch\n\
             frontend front\n  bind {lb}:8080\n  default_backend app\n\
             backend app\n  balance roundrobin\n  option httpchk\n  http-check send meth GET uri /deployments/web/health\n  http-check expect status 200\n  default-server inter 200ms fall 2 rise 2\n  server a {a_lo}:8000 check addr {a_ip} port {a_port}\n  server b {b_lo}:8000 check addr {b_ip} port {b_port}\n\
             listen stats\n  bind {lb}:8081\n  stats enable\n  stats uri /stats\n",
            lb = lb_ip(),
            a_ip = a.http.ip(),
            a_port = a.http.port(),
            b_ip = b.http.ip(),
            b_port = b.http.port(),
        ),
    )
    .unwrap();
    let check = Command::new(&haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let log = std::fs::File::create(flags.path().join("haproxy.log")).unwrap();
    let _lb = HaProxy(
        Command::new(&haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting haproxy"),
    );
    assert!(
        wait_until(Duration::from_secs(15), || status_of("a") == "UP"
            && status_of("b") == "UP"),
        "HAProxy did not see both instances UP: {:?}\n--- haproxy log ---\n{}\n--- stats ---\n{:?}",
        server_status(),
        std::fs::read_to_string(flags.path().join("haproxy.log")).unwrap_or_default(),
        http_get(&format!("http://{}:8081/stats;csv", lb_ip()))
    );
    let front = format!("http://{}:8080/", lb_ip());
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
        wait_until(Duration::from_secs(20), || status_of("b")
            .starts_with("DOWN")),
        "HAProxy did not mark b DOWN: {:?}; b says {:?}",
        server_status(),
        http_get(&b.http_url("/deployments/web/health"))
    );
    let (code, body) = http_get(&b.http_url("/deployments/web/health")).unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"healthy\":false"), "{body}");
    assert_eq!(status_of("a"), "UP");
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
        wait_until(Duration::from_secs(20), || status_of("b") == "UP"),
        "b did not come back UP: {:?}",
        server_status()
    );
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = client.join().unwrap();
    assert!(
        failed.is_empty(),
        "requests through HAProxy failed: {failed:?} ({ok} ok)"
    );
    assert!(ok > 20, "only {ok} requests went through");
}
