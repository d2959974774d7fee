//! One node proxy serves every deployment of a node: connections that send nothing, that
//! send a request's head a few bytes at a time (slowloris), or that stay open after an
//! answer must not take it over. They are closed after the agent's `proxy_header_timeout`
//! and `proxy_idle_timeout`; a deployment's connections beyond `proxy_max_connections` get a
//! 503 that says why; another deployment behind the same proxy serves throughout; and the
//! proxy raises its open-file limit to the hard limit when it starts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deployctl_e2e::*;

const ENV: &str = "e2e";
/// Connections of each kind (silent, slowloris, idle after an answer).
const EACH: usize = 1000;
const HEADER_TIMEOUT: Duration = Duration::from_secs(4);
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

fn deploy(project: &Project, name: &str, port: &str) {
    let repo = GitRepo::new();
    let commit = repo.commit_app(name, None);
    project
        .run_app(ENV, name, &repo.url(), &commit, &["--port", port])
        .ok();
}

/// Reads one HTTP/1.1 answer with a Content-Length: its status and body.
fn read_answer(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn open(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("connecting to the deployment");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Waits until every stream of `streams` is closed by the proxy.
fn all_closed(streams: &[TcpStream], within: Duration, what: &str) {
    let mut open: Vec<&TcpStream> = streams.iter().collect();
    let done = wait_until(within, || {
        open.retain(|s| !closed_by_peer(s));
        open.is_empty()
    });
    assert!(
        done,
        "{} of {} {what} connections still open after {within:?}",
        open.len(),
        streams.len()
    );
}

#[test]
fn idle_and_slowloris_connections_are_closed_and_capped_while_another_deployment_serves() {
    let ip = loopback();
    let config = format!(
        "proxy_header_timeout = \"{}s\"\nproxy_idle_timeout = \"{}s\"\nproxy_max_connections = {}\n",
        HEADER_TIMEOUT.as_secs(),
        IDLE_TIMEOUT.as_secs(),
        3 * EACH
    );
    // The agent, and so its proxy, starts with a low soft limit on open files: the proxy
    // raises it to the hard limit.
    let ours = set_open_files_soft_limit(1024);
    let agent = Agent::start_with(&ip, &config, &[]);
    set_open_files_soft_limit(ours);
    let project = Project::for_agent(ENV, &agent);
    deploy(&project, "target", "8000");
    deploy(&project, "other", "8001");
    let proxy = agent.proxy_pid().expect("the node proxy runs");
    let (soft, hard) = open_files_limit(proxy).expect("the proxy's limits");
    assert!(
        soft == hard && soft > 1024,
        "the proxy's open-file limit is raised to its hard limit: soft {soft}, hard {hard}"
    );

    let normal = Load::start(&agent.app_url(8001, "/"));
    normal.wait_for(5);
    let target: SocketAddr = format!("{ip}:8000").parse().unwrap();

    // Idle after an answer: one request each (HTTP/1.1, kept alive), one after the other
    // (the app's listen backlog is Python's 5).
    let first_idle = std::time::Instant::now();
    let idle: Vec<TcpStream> = (0..EACH)
        .map(|i| {
            let mut s = open(target);
            s.write_all(b"GET / HTTP/1.1\r\nHost: target\r\n\r\n")
                .unwrap();
            let answer = read_answer(&mut s);
            assert!(
                matches!(&answer, Some((200, body)) if body.contains("target")),
                "request {i} answered {answer:?}"
            );
            s
        })
        .collect();
    // Silent, and a request's head a few bytes at a time.
    let silent: Vec<TcpStream> = (0..EACH).map(|_| open(target)).collect();
    let slow: Arc<Vec<TcpStream>> = Arc::new((0..EACH).map(|_| open(target)).collect());
    for s in slow.iter() {
        (&*s)
            .write_all(b"GET / HTTP/1.1\r\nHost: target\r\n")
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let (slow, stop) = (slow.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for s in slow.iter() {
                    let _ = (&*s).write_all(b"X-Slow: 1\r\n");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    // The deployment's connections are at the limit: one more gets a 503 that says why.
    let mut over = open(target);
    over.write_all(b"GET / HTTP/1.1\r\nHost: target\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("proxy_max_connections"),
        "a connection beyond the limit: {answer:?}"
    );

    // Closed after the timeouts: the slowloris ones although they keep sending.
    all_closed(&silent, HEADER_TIMEOUT + Duration::from_secs(10), "silent");
    all_closed(&slow, HEADER_TIMEOUT + Duration::from_secs(10), "slowloris");
    // The idle ones have their own, longer timeout.
    if first_idle.elapsed() + Duration::from_secs(2) < IDLE_TIMEOUT {
        let closed = idle.iter().filter(|s| closed_by_peer(s)).count();
        assert_eq!(
            closed, 0,
            "idle connections closed before proxy_idle_timeout"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let _ = trickle.join();
    all_closed(&idle, IDLE_TIMEOUT + Duration::from_secs(10), "idle");

    // The deployment serves again, and the other one never failed.
    assert!(
        wait_until(Duration::from_secs(10), || matches!(
            http_get(&agent.app_url(8000, "/")),
            Some((200, _))
        )),
        "the target deployment serves once its connections are closed"
    );
    let seen = normal.finish();
    assert!(
        seen.failed.is_empty() && seen.ok > 10,
        "the other deployment's client: {} answers, failures {:?}",
        seen.ok,
        seen.failed
    );
}
