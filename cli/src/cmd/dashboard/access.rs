//! Who may read the dashboard: a page in the user's browser from this machine, reached by
//! the dashboard's own address, holding the secret in the URL `deployctl dashboard` printed
//! (as Jupyter does). A web page elsewhere cannot read it through DNS rebinding (its `Host`
//! is not this address) nor guess the secret; the secret moves from the URL into a cookie
//! (HttpOnly, SameSite=Strict) on the first visit.

use std::io::Read;
use std::net::SocketAddr;

use hyper::{Request, StatusCode};

const COOKIE: &str = "deployctl_dashboard";

pub(super) struct Access {
    token: String,
    hosts: Vec<String>,
}

/// Why a request was refused, as the reply says it.
pub(super) type Refused = (StatusCode, String);

impl Access {
    /// A new secret, for the dashboard listening on `addr`.
    pub(super) fn new(addr: SocketAddr) -> anyhow::Result<Access> {
        let port = addr.port();
        Ok(Access {
            token: random_hex(16)?,
            hosts: vec![
                addr.to_string(),
                format!("localhost:{port}"),
                format!("127.0.0.1:{port}"),
                format!("[::1]:{port}"),
            ],
        })
    }

    /// The URL to open: the dashboard's address with its secret.
    pub(super) fn url(&self, addr: SocketAddr) -> String {
        format!("http://{addr}/?token={}", self.token)
    }

    /// Whether `req` may be answered: `Ok(true)` when it brought the secret in its URL
    /// (the reply then sets the cookie that carries it from now on).
    pub(super) fn check<B>(&self, req: &Request<B>) -> Result<bool, Refused> {
        // Exactly one Host, and it is this address.
        let hosts: Vec<&str> = req
            .headers()
            .get_all(hyper::header::HOST)
            .iter()
            .map(|h| h.to_str().unwrap_or("?"))
            .collect();
        let host = match hosts.as_slice() {
            [one] => *one,
            _ => "",
        };
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("refused: Host {host:?} is not this dashboard's address (open the URL deployctl dashboard printed)\n"),
            ));
        }
        let in_query = req
            .uri()
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("token="));
        if in_query.is_some_and(|t| same(t, &self.token)) {
            return Ok(true);
        }
        let in_cookie = req
            .headers()
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
        match in_cookie.is_some_and(|t| same(t, &self.token)) {
            true => Ok(false),
            false => Err((
                StatusCode::FORBIDDEN,
                "refused: no dashboard token; open the URL `deployctl dashboard` printed (it ends in ?token=...)\n".into(),
            )),
        }
    }

    /// The cookie that carries the secret after the first visit.
    pub(super) fn cookie(&self) -> String {
        format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", self.token)
    }
}

/// `n` random bytes from the kernel, as hex.
pub(super) fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("reading random bytes from /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares in constant time (for equal lengths).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, path: &str, cookie: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(path).header("host", host);
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_this_address_with_the_secret_is_answered() {
        let addr: SocketAddr = "127.0.0.1:7080".parse().unwrap();
        let a = Access::new(addr).unwrap();
        let t = a.token.clone();
        assert_eq!(
            a.check(&req("127.0.0.1:7080", &format!("/?token={t}"), None)),
            Ok(true)
        );
        let cookie = format!("x=1; {COOKIE}={t}");
        assert_eq!(
            a.check(&req("localhost:7080", "/data.json", Some(&cookie))),
            Ok(false)
        );
        // DNS rebinding: the right secret under another name is refused.
        let rebound = a.check(&req("evil.example:7080", &format!("/?token={t}"), None));
        assert_eq!(rebound.map_err(|e| e.0), Err(StatusCode::FORBIDDEN));
        for bad in ["/", "/?token=00", "/data.json?token="] {
            assert!(a.check(&req("127.0.0.1:7080", bad, None)).is_err(), "{bad}");
        }
        assert!(a
            .check(&req(
                "127.0.0.1:7080",
                "/",
                Some("deployctl_dashboard=nope")
            ))
            .is_err());
        assert_eq!(a.url(addr), format!("http://127.0.0.1:7080/?token={t}"));
        assert_ne!(Access::new(addr).unwrap().token, t, "a new secret each run");
    }
}
