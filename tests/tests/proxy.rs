//! What passes through the node proxy, checked against a real app behind a real agent:
//! forwarding headers and `Host`, server-sent events as they come, a WebSocket echo, a
//! 100 MB upload streamed (the proxy's memory stays small), plain TCP (`--proxy tcp`), and a
//! proxy that is killed: the agent starts it again and it serves its routes at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use deployctl_e2e::*;

const ENV: &str = "e2e";

/// An HTTP app for the protocols: `/headers` (JSON of what it got), `/events` (three
/// server-sent events a second apart), `POST /upload` (counts the body as it reads it),
/// `/ws` (a WebSocket echo, handshake and frames by hand: stdlib only), `/health`.
const PROTOCOLS_PY: &str = r#"import base64, hashlib, json, os, struct, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, kind="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, b"ok", "text/plain")
        elif self.path == "/headers":
            self.reply(200, json.dumps({k.lower(): v for k, v in self.headers.items()}).encode())
        elif self.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for n in range(1, 4):
                self.wfile.write(f"data: event {n}\n\n".encode())
                self.wfile.flush()
                time.sleep(1)
            self.close_connection = True
        elif self.path == "/ws":
            accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            head = self.rfile.read(2)
            length = head[1] & 0x7F
            mask = self.rfile.read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            self.wfile.write(bytes([0x81, len(data)]) + data)
            self.wfile.flush()
            self.close_connection = True
        else:
            self.reply(404, b"{}")

    def do_POST(self):
        left = int(self.headers["Content-Length"])
        digest, total = hashlib.sha256(), 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
            left -= len(chunk)
        self.reply(200, json.dumps({"bytes": total, "sha256": digest.hexdigest()}).encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A line-echo TCP server (not HTTP).
const ECHO_PY: &str = r#"import os, socketserver


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"echo " + line)


socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer((os.environ["HOST"], int(os.environ["PORT"])), Echo).serve_forever()
"#;

fn deploy(agent: &Agent, app: &str, extra: &[&str]) -> (Project, GitRepo) {
    let project = Project::for_agent(ENV, agent);
    let repo = GitRepo::new();
    repo.write("app.py", app);
    repo.commit("app");
    let url = repo.url();
    let mut args = vec![
        "run",
        "proto",
        "--env",
        ENV,
        "--repo",
        &url,
        "--command",
        "python3 app.py",
    ];
    args.extend_from_slice(extra);
    project.deployctl(&args).ok();
    (project, repo)
}

fn connect(agent: &Agent) -> TcpStream {
    let s = TcpStream::connect((agent.ip.as_str(), 8000)).expect("connecting to the deployment");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// The node proxy's pid, from its pid file.
fn proxy_pid(agent: &Agent) -> u32 {
    std::fs::read_to_string(agent.data_dir.join("proxy/proxy.pid"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .expect("the proxy's pid file")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn headers_events_websockets_and_uploads_pass_through() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let _deployed = deploy(&agent, PROTOCOLS_PY, &["--health-path", "/health"]);

    // Host is kept; X-Forwarded-For and -Proto are set.
    let answer = http_get_with(
        &agent.app_url(8000, "/headers"),
        &[("Host", "models.example.org")],
    )
    .expect("headers answer");
    let headers: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(headers["host"], "models.example.org", "{headers}");
    let from: std::net::IpAddr = headers["x-forwarded-for"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("X-Forwarded-For names the client: {headers}"));
    assert!(from.is_loopback(), "{headers}");
    assert_eq!(headers["x-forwarded-proto"], "http", "{headers}");

    // Server-sent events arrive as they are sent, not when the stream ends (3 s).
    let mut events = connect(&agent);
    let began = Instant::now();
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(events);
    let mut line = String::new();
    while !line.contains("data: event 1") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
    }
    let first = began.elapsed();
    assert!(
        first < Duration::from_millis(1500),
        "first event after {first:?}"
    );
    let mut rest = String::new();
    let _ = reader.read_to_string(&mut rest);
    assert!(rest.contains("data: event 3"), "{rest}");
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "the stream lasted {:?}",
        began.elapsed()
    );

    // A WebSocket echo.
    let mut ws = connect(&agent);
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    let payload = b"hello through the proxy";
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    ws.write_all(&frame).unwrap();
    let mut echo = vec![0u8; 2 + payload.len()];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(&echo[2..], payload);

    // 100 MB up, streamed: the proxy never holds it.
    let size: usize = 100 * 1024 * 1024;
    let mut up = connect(&agent);
    up.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 16];
    let proxy = proxy_pid(&agent);
    let mut peak = 0;
    for i in 0..size / chunk.len() {
        up.write_all(&chunk).unwrap();
        if i % 256 == 0 {
            peak = peak.max(rss_kib(proxy));
        }
    }
    let mut answer = String::new();
    up.read_to_string(&mut answer).unwrap();
    assert!(answer.contains(&format!("\"bytes\": {size}")), "{answer}");
    assert!(
        peak > 0 && peak < 40 * 1024,
        "the proxy's RSS reached {peak} KiB"
    );
}

#[test]
fn tcp_mode_forwards_bytes_and_a_killed_proxy_comes_back_with_its_routes() {
    let ip = loopback();
    let agent = Agent::start(&ip);
    let _deployed = deploy(&agent, ECHO_PY, &["--proxy", "tcp"]);
    let echo = |text: &str| -> Option<String> {
        let s = TcpStream::connect((agent.ip.as_str(), 8000)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        (&s).write_all(format!("{text}\n").as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).ok()?;
        Some(line)
    };
    assert_eq!(echo("ping").as_deref(), Some("echo ping\n"));

    let old = proxy_pid(&agent);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || proxy_pid(&agent) != old
            && echo("again").as_deref() == Some("echo again\n")),
        "the agent starts the proxy again, and it serves the persisted route"
    );
}
