//! What the agent's config sets for the connections of every route: how long the proxy waits
//! for a request's head and for the next request on a kept-alive connection, how many
//! connections one deployment may have open, and which peers are proxies whose
//! `X-Forwarded-For` and `X-Forwarded-Proto` are believed. Sent with each route (so a
//! change of the agent's config reaches a proxy that outlived the agent) and persisted with it.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// The defaults of the agent's `proxy_*` keys.
pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ConnSettings {
    /// A request's head must have arrived this long after the connection opened, or after
    /// its first byte on a kept-alive connection; else the connection is closed.
    pub header_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// Connections the route may have open; one more is answered 503 (HTTP) or closed (TCP).
    pub max_connections: u32,
    /// Peers whose forwarding headers are extended rather than replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ConnSettings {
    fn default() -> Self {
        ConnSettings {
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT.as_millis() as u64,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT.as_millis() as u64,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ConnSettings {
    pub(crate) fn from_config(config: &crate::config::Config) -> ConnSettings {
        ConnSettings {
            header_timeout_ms: millis(config.proxy_header_timeout),
            idle_timeout_ms: millis(config.proxy_idle_timeout),
            max_connections: config.proxy_max_connections,
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    pub(crate) fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    /// Whether `peer` is a proxy whose forwarding headers are believed.
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn a_mapped_peer_is_its_ipv4_address() {
        let s = ConnSettings {
            trusted_proxies: vec![cidr("10.0.0.0/8")],
            ..Default::default()
        };
        assert!(s.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!s.trusts("192.0.2.1".parse().unwrap()));
        assert!(!ConnSettings::default().trusts("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn routes_persisted_before_the_settings_get_the_defaults() {
        let s: ConnSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, ConnSettings::default());
        let json = serde_json::to_string(&ConnSettings {
            trusted_proxies: vec![cidr("10.0.0.0/8")],
            ..Default::default()
        })
        .unwrap();
        assert!(
            json.contains(r#""trusted_proxies":["10.0.0.0/8"]"#),
            "{json}"
        );
    }
}
