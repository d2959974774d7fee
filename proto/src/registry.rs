//! The registry of agents in etcd, as both sides read it: where (`etcd://HOST:PORT/PREFIX`),
//! under which keys (`/PREFIX/agents/HOST:PORT`) and what each agent writes there (a
//! [`Record`], JSON). `deploy-agent` writes it (under a lease), `deployctl`'s fleet envs read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where the agent registers: etcd's gRPC endpoint and the key prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    /// `http://HOST:PORT`
    pub endpoint: String,
    /// `/PREFIX/agents/`
    pub prefix: String,
}

impl Registry {
    /// `etcd://HOST:PORT/PREFIX` (the prefix defaults to `deployctl`).
    pub fn parse(uri: &str) -> Result<Registry, String> {
        let rest = uri
            .trim()
            .strip_prefix("etcd://")
            .ok_or_else(|| format!("{uri:?} is not etcd://HOST:PORT/PREFIX"))?;
        let (hostport, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let port_ok = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(format!("{uri:?} is not etcd://HOST:PORT/PREFIX"));
        }
        let prefix = match prefix.trim_matches('/') {
            "" => "deployctl",
            p => p,
        };
        Ok(Registry {
            endpoint: format!("http://{hostport}"),
            prefix: format!("/{prefix}/agents/"),
        })
    }
}

/// Label names: letters, digits, `_`, `-`, `.`; values: anything but `,` and `=` (the
/// selector's separators), not empty.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in labels {
        let ok = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            return Err(format!(
                "{k:?} is not a label name (letters, digits, '_', '-', '.')"
            ));
        }
        if v.is_empty() || v.contains([',', '=', '<', '>', '!']) {
            return Err(format!(
                "{k} = {v:?}: a label's value is not empty and has no ',', '=', '<', '>' or '!'"
            ));
        }
    }
    Ok(())
}

/// What the agent writes under its key (JSON), read by `deployctl` for fleet envs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// How deployctl reaches the agent: `http://` or `https://` (with TLS), `HOST:PORT`.
    pub address: String,
    pub version: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub cpus: u32,
    pub cpus_committed: f64,
    pub memory_total_bytes: u64,
    /// Memory not in use now.
    pub memory_free_bytes: u64,
    /// What the deployments' memory limits add up to.
    pub memory_committed_bytes: u64,
    /// Memory limits may add up to this share of `memory_total_bytes`.
    pub overcommit: f64,
    pub gpus_total: u32,
    pub gpus_free: u32,
    pub deployments: u32,
}

impl Record {
    /// What memory limits may still add up to on this node: its memory times the overcommit
    /// share, less what the deployments' limits already take.
    pub fn memory_room_bytes(&self) -> u64 {
        ((self.memory_total_bytes as f64 * self.overcommit) as u64)
            .saturating_sub(self.memory_committed_bytes)
    }
}

/// An agent's key's last part: its address without the scheme (`HOST:PORT`).
pub fn key_of(address: &str) -> &str {
    address.split_once("://").map_or(address, |(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_registry_uri() {
        let r = Registry::parse("etcd://127.0.0.1:2379/team").unwrap();
        assert_eq!(r.endpoint, "http://127.0.0.1:2379");
        assert_eq!(r.prefix, "/team/agents/");
        assert_eq!(
            Registry::parse("etcd://h:1").unwrap().prefix,
            "/deployctl/agents/"
        );
        for bad in ["h:1/x", "etcd://nohost", "etcd://h:99999/x", "etcd://:1/x"] {
            assert!(Registry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_are_names_and_plain_values() {
        let ok: BTreeMap<String, String> = [("zone".into(), "eu-1a".into())].into();
        assert!(check_labels(&ok).is_ok());
        for (k, v) in [
            ("", "a"),
            ("a b", "x"),
            ("zone", ""),
            ("zone", "a,b"),
            ("z", "a=b"),
        ] {
            let l: BTreeMap<String, String> = [(k.to_string(), v.to_string())].into();
            assert!(check_labels(&l).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn the_key_is_the_address_without_its_scheme() {
        assert_eq!(key_of("https://10.0.0.5:7070"), "10.0.0.5:7070");
        assert_eq!(key_of("h:1"), "h:1");
    }
}
