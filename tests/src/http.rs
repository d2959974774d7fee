//! A tiny HTTP/1.0 client over `std::net::TcpStream`, with timeouts, for talking to apps and
//! to the agent's HTTP endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::wait_until;

/// A plain HTTP/1.0 request over a `TcpStream` with timeouts; `None` when the server cannot
/// be reached or the answer is not HTTP.
pub fn http_request(method: &str, url: &str, body: Option<&str>) -> Option<(u16, String)> {
    http_exchange(method, url, &[], body).map(|r| (r.status, r.body))
}

/// An HTTP answer: status, header lines (as sent) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// GET `url` with extra request headers (`("Accept", "...")`).
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    http_exchange("GET", url, headers, None)
}

/// `method` `url` with extra request headers and a body.
pub fn http_request_with(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<Answer> {
    http_exchange(method, url, headers, body)
}

fn http_exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<Answer> {
    exchange(method, url, headers, body).ok()
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswer {
    /// The connection was refused: nothing listened on the port.
    Refused,
    /// Anything else (reset, timeout, not HTTP), in words.
    Other(String),
}

/// GET `url`: `(status, body)`, or why there was no answer (a refused connection apart).
pub fn http_get_or_why(url: &str) -> Result<(u16, String), NoAnswer> {
    exchange("GET", url, &[], None).map(|a| (a.status, a.body))
}

fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Answer, NoAnswer> {
    let other = |what: &str| NoAnswer::Other(what.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| other("not http"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| other("no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => NoAnswer::Refused,
            _ => NoAnswer::Other(format!("connecting: {e}")),
        })?;
    let io = |what: &'static str| move |e: std::io::Error| NoAnswer::Other(format!("{what}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io("socket"))?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io("socket"))?;
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.0\r\nConnection: close\r\n");
    // The address's Host, unless the test sends its own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {hostport}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).map_err(io("sending"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io("reading"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| {
            NoAnswer::Other(format!(
                "not HTTP: {:?}",
                head.chars().take(40).collect::<String>()
            ))
        })?;
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// GET `url`: `(status, body)`, or `None` when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    http_request("GET", url, None)
}

/// POST JSON text to `url`.
pub fn http_post(url: &str, json: &str) -> Option<(u16, String)> {
    http_request("POST", url, Some(json))
}

/// GET `url` and parse the body as JSON, when it answers 200.
pub fn get_json(url: &str) -> Option<Value> {
    match http_get(url) {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Polls `url` until it answers 200 with JSON (or panics after `deadline`).
pub fn wait_for_json(url: &str, deadline: Duration) -> Value {
    let mut got = None;
    let ok = wait_until(deadline, || {
        got = get_json(url);
        got.is_some()
    });
    assert!(
        ok,
        "{url} did not answer 200 with JSON within {deadline:?} (last: {:?})",
        http_get(url)
    );
    got.unwrap()
}
