//! Health checks: an HTTP GET expecting 2xx/3xx, or a TCP connect. Each check says what it
//! saw, so "unhealthy" always comes with a reason.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one check may take.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What one check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub healthy: bool,
    /// "HTTP 200 in 3 ms", "connection refused", "HTTP 500: <body start>".
    pub summary: String,
    /// Nothing accepted the connection (as opposed to an answer that was wrong).
    pub refused: bool,
}

/// Why `host:port` is not the app's although something answers there: a listener of
/// another user than `uid` (another deployment's app that took the port while this one
/// was down). `None` when every listener there is `uid`'s, or the kernel cannot say.
pub(crate) async fn foreign_listener(host: IpAddr, port: u16, uid: u32) -> Option<String> {
    let uids = tokio::task::spawn_blocking(move || crate::sockowner::listener_uids(host, port))
        .await
        .ok()?
        .ok()?;
    let other = uids.into_iter().find(|u| *u != uid)?;
    Some(format!(
        "port {port} is held by a process of another user (uid {other}), not by this app: it gets no traffic"
    ))
}

/// Checks `host:port`, with an HTTP GET of `path` when given, else a TCP connect.
pub(crate) async fn check(
    host: IpAddr,
    port: u16,
    path: Option<&str>,
    timeout: Duration,
) -> Checked {
    let started = Instant::now();
    let addr = SocketAddr::new(host, port);
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return fail(format!("connecting to {addr} timed out"), false),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return fail(format!("connection refused on {addr}"), true)
        }
        // Not a refusal (no free local port, ...): no sign of a wrong port.
        Ok(Err(e)) => return fail(format!("cannot connect to {addr}: {e}"), false),
        Ok(Ok(s)) => s,
    };
    let Some(path) = path else {
        return Checked {
            healthy: true,
            summary: format!("TCP connect in {} ms", started.elapsed().as_millis()),
            refused: false,
        };
    };
    match tokio::time::timeout(timeout, http_get(stream, addr, path)).await {
        Err(_) => fail(
            format!(
                "GET {path} got no answer within {}",
                humantime::format_duration(timeout)
            ),
            false,
        ),
        Ok(Err(e)) => fail(format!("GET {path} failed: {e}"), false),
        Ok(Ok((status, body))) => {
            let ms = started.elapsed().as_millis();
            if (200..400).contains(&status) {
                Checked {
                    healthy: true,
                    summary: format!("HTTP {status} in {ms} ms"),
                    refused: false,
                }
            } else {
                let body = body.trim();
                let summary = if body.is_empty() {
                    format!("GET {path} returned HTTP {status}")
                } else {
                    format!("GET {path} returned HTTP {status}: {body}")
                };
                fail(summary, false)
            }
        }
    }
}

fn fail(summary: String, refused: bool) -> Checked {
    Checked {
        healthy: false,
        summary,
        refused,
    }
}

/// A minimal HTTP/1.1 GET: returns the status code and the start of the body.
async fn http_get(
    stream: TcpStream,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    request(stream, addr, "GET", path, "", false).await
}

/// A minimal HTTP/1.1 request (`Connection: close`; a body starting with `{` or `[` is sent
/// as JSON): the status code and the start of the answer's body. `whole`: the answer is
/// read to its end (up to 1 MiB) rather than only its head and a little of its body.
pub(crate) async fn request(
    mut stream: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    whole: bool,
) -> std::io::Result<(u16, String)> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: deploy-agent\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE") {
        let kind = match body.trim_start().chars().next() {
            Some('{' | '[') => "application/json",
            _ => "text/plain; charset=utf-8",
        };
        req.push_str(&format!(
            "Content-Type: {kind}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    let limit = if whole { 1024 * 1024 } else { 8192 };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // Read the head and a little of the body (or all of it); never more than `limit`.
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let (false, Some(end)) = (whole, find(&buf, b"\r\n\r\n")) {
            if buf.len() >= end + 4 + 200 {
                break;
            }
        }
        if buf.len() >= limit {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    match (version.starts_with("HTTP/"), status) {
        (true, Some(status)) => {
            let body = match text.find("\r\n\r\n") {
                Some(i) => text[i + 4..].chars().take(200).collect(),
                None => String::new(),
            };
            Ok((status, body.replace(['\r', '\n'], " ")))
        }
        (_, _) if buf.is_empty() => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the connection was closed without an answer",
        )),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the answer is not HTTP: {:?}",
                status_line.chars().take(80).collect::<String>()
            ),
        )),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The delay before the next check while waiting for a new release, `waited` after it
/// started: every 10 ms at first, then a twentieth of the time waited so far, up to 250 ms.
/// So the check that sees it healthy comes at most ~5% (and 10 ms) after it became
/// healthy, and a slow starter is checked a few times a second. (A check of an app that
/// does not listen yet is a refused connect: next to nothing.)
pub(crate) fn startup_poll_delay(waited: Duration) -> Duration {
    (waited / 20).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    async fn serve_once(reply: &'static str) -> u16 {
        let l = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(reply.as_bytes()).await.unwrap();
        });
        port
    }

    #[tokio::test]
    async fn http_200_is_healthy() {
        let port = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let c = check(LOCAL, port, Some("/health"), CHECK_TIMEOUT).await;
        assert!(c.healthy, "{c:?}");
        assert!(c.summary.starts_with("HTTP 200"));
    }

    #[tokio::test]
    async fn http_500_reports_status_and_body() {
        let port = serve_once("HTTP/1.1 500 Oops\r\n\r\nmodel not loaded").await;
        let c = check(LOCAL, port, Some("/health"), CHECK_TIMEOUT).await;
        assert!(!c.healthy);
        assert_eq!(c.summary, "GET /health returned HTTP 500: model not loaded");
    }

    #[tokio::test]
    async fn refused_is_reported() {
        let l = TcpListener::bind((LOCAL, 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = check(LOCAL, port, None, CHECK_TIMEOUT).await;
        assert!(!c.healthy && c.refused, "{c:?}");
    }

    #[tokio::test]
    async fn not_http_is_reported() {
        let port = serve_once("SSH-2.0-OpenSSH\r\n").await;
        let c = check(LOCAL, port, Some("/"), CHECK_TIMEOUT).await;
        assert!(!c.healthy);
        assert!(c.summary.contains("not HTTP"), "{}", c.summary);
    }

    #[test]
    fn poll_delay_backs_off_and_caps() {
        let ms = Duration::from_millis;
        assert_eq!(startup_poll_delay(ms(0)), ms(10));
        assert_eq!(startup_poll_delay(ms(150)), ms(10));
        assert_eq!(startup_poll_delay(ms(600)), ms(30));
        assert_eq!(startup_poll_delay(ms(2000)), ms(100));
        assert_eq!(startup_poll_delay(Duration::from_secs(60)), ms(250));
    }
}
