//! The headers the proxy sets on a request: hop-by-hop ones are not passed on (except for an
//! upgrade), and `X-Forwarded-For` and `X-Forwarded-Proto` say who the client is and how it
//! came. A client cannot forge them: what it sent is replaced by its own address and
//! `http`, unless the peer is one of the agent's `trusted_proxies` (a load balancer in
//! front of the node), whose `X-Forwarded-For` is appended to and whose
//! `X-Forwarded-Proto` is kept.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, TRAILER};

use super::settings::ConnSettings;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP: HeaderValue = HeaderValue::from_static("http");

/// What one client connection's requests get: worked out once per connection.
pub(crate) struct Forwarding {
    /// The peer's address as a header value.
    peer: HeaderValue,
    trusted: bool,
}

impl Forwarding {
    pub(crate) fn new(peer: IpAddr, settings: &ConnSettings) -> Forwarding {
        let peer = peer.to_canonical();
        Forwarding {
            peer: HeaderValue::try_from(peer.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            trusted: settings.trusts(peer),
        }
    }

    pub(crate) fn prepare(&self, headers: &mut HeaderMap, upgrade: bool) {
        // Looked for in one pass (most requests have none): a removal costs a hash each.
        let hop = |h: &HeaderName| {
            (*h == CONNECTION && !upgrade)
                || *h == KEEP_ALIVE
                || *h == PROXY_CONNECTION
                || *h == TE
                || *h == TRAILER
        };
        if headers.keys().any(hop) {
            if !upgrade {
                headers.remove(CONNECTION);
            }
            for h in [KEEP_ALIVE, PROXY_CONNECTION, TE, TRAILER] {
                headers.remove(h);
            }
        }
        if !self.trusted {
            headers.insert(X_FORWARDED_FOR, self.peer.clone());
            headers.insert(X_FORWARDED_PROTO, HTTP);
            return;
        }
        let mut chain = Vec::new();
        for v in headers.get_all(X_FORWARDED_FOR) {
            let v = v.as_bytes().trim_ascii();
            if !v.is_empty() {
                chain.extend_from_slice(v);
                chain.extend_from_slice(b", ");
            }
        }
        chain.extend_from_slice(self.peer.as_bytes());
        // Joined from valid values and an address: valid.
        if let Ok(v) = HeaderValue::from_bytes(&chain) {
            headers.insert(X_FORWARDED_FOR, v);
        }
        if !headers.contains_key(X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HTTP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(peer: &str, trusted: &[&str], sent: &[(&str, &str)]) -> HeaderMap {
        let settings = ConnSettings {
            trusted_proxies: trusted.iter().map(|c| c.parse().unwrap()).collect(),
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        for (k, v) in sent {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Forwarding::new(peer.parse().unwrap(), &settings).prepare(&mut headers, false);
        headers
    }

    fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_client_cannot_forge_where_it_is_from() {
        let forged = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
        ];
        let h = prepared("192.0.2.10", &[], &forged);
        assert_eq!(all(&h, "x-forwarded-for"), ["192.0.2.10"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"));
        let h = prepared("::ffff:192.0.2.10", &["10.0.0.0/8"], &forged);
        assert_eq!(all(&h, "x-forwarded-for"), ["192.0.2.10"]);
    }

    #[test]
    fn a_trusted_proxy_is_appended_to_and_its_protocol_kept() {
        let sent = [
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1 "),
            ("x-forwarded-proto", "https"),
        ];
        let h = prepared("10.1.2.3", &["10.0.0.0/8"], &sent);
        assert_eq!(
            all(&h, "x-forwarded-for"),
            ["203.0.113.7, 198.51.100.1, 10.1.2.3"]
        );
        assert_eq!(all(&h, "x-forwarded-proto"), ["https"]);
        let h = prepared("10.1.2.3", &["10.0.0.0/8"], &[]);
        assert_eq!(all(&h, "x-forwarded-for"), ["10.1.2.3"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
    }
}
