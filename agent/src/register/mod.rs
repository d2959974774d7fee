//! The agent announcing itself (`register = "etcd://HOST:2379/PREFIX"`): its address, version,
//! labels and capacity under `/PREFIX/agents/HOST:PORT`, a key bound to an etcd lease the
//! agent keeps alive. A stopped agent revokes its lease (its key goes at once); a killed or
//! cut-off one stops renewing it, and etcd deletes the key within the lease's TTL. Fleet envs
//! (`deployctl declare env fleet`) read these keys.
//!
//! A lost etcd is never fatal: the agent logs it and tries again, backing off up to
//! [`MAX_BACKOFF`], while its deployments carry on.

mod lease;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::supervisor::Supervisor;

/// The longest wait between two attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Record {
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

/// The address deployctl reaches this agent at: its gRPC address with the scheme it
/// serves (https when it has a certificate); a wildcard address (`0.0.0.0`) is replaced by
/// the host's name.
pub(crate) fn advertised(sup: &Supervisor) -> String {
    let config = sup.config();
    let scheme = if config.tls_paths().is_some() {
        "https"
    } else {
        "http"
    };
    let listen = config.listen;
    let host = if listen.ip().is_unspecified() {
        crate::supervisor::hostname()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("{scheme}://{host}:{}", listen.port())
}

/// The record as of now (the node's facts read on a blocking thread).
async fn record(sup: &Arc<Supervisor>, address: &str) -> Record {
    let deployments = sup
        .registry()
        .all()
        .iter()
        .filter(|d| d.current().is_some())
        .count() as u32;
    let info = crate::node::info(sup.clone(), deployments).await;
    Record {
        address: address.to_string(),
        version: info.version,
        hostname: info.hostname,
        labels: sup.config().labels.clone(),
        cpus: info.cpus,
        cpus_committed: info.cpus_committed,
        memory_total_bytes: info.memory_total_bytes,
        memory_free_bytes: info
            .memory_total_bytes
            .saturating_sub(info.memory_used_bytes),
        memory_committed_bytes: info.memory_committed_bytes,
        overcommit: info.overcommit,
        gpus_total: info.gpus_total,
        gpus_free: info.gpus_free,
        deployments,
    }
}

/// The running registration: stopping it revokes the lease, so the agent leaves the
/// registry at once rather than after the TTL.
pub(crate) struct Handle {
    task: tokio::task::AbortHandle,
    registry: Registry,
    /// The lease now held (0: none).
    lease: Arc<AtomicI64>,
}

/// Starts registering, when the config says where; `None` otherwise.
pub(crate) fn spawn(sup: &Arc<Supervisor>) -> Option<Handle> {
    let registry = sup.config().register.clone()?;
    let lease = Arc::new(AtomicI64::new(0));
    let task = tokio::spawn(keep_registered(
        sup.clone(),
        registry.clone(),
        lease.clone(),
    ));
    Some(Handle {
        task: task.abort_handle(),
        registry,
        lease,
    })
}

impl Handle {
    /// Stops renewing and revokes the lease (within 2 s; if etcd does not answer, the key
    /// goes when the lease expires).
    pub(crate) async fn stop(self) {
        self.task.abort();
        let id = self.lease.swap(0, Ordering::SeqCst);
        if id != 0 {
            let revoke = lease::revoke(&self.registry, id);
            match tokio::time::timeout(Duration::from_secs(2), revoke).await {
                Ok(Ok(())) => {
                    tracing::info!(registry = %self.registry.endpoint, "left the registry")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not leave the registry; the entry expires with its lease")
                }
                Err(_) => {
                    tracing::warn!("etcd did not answer in time; the entry expires with its lease")
                }
            }
        }
    }
}

/// Registers, and registers again whenever the session ends (etcd lost, lease expired),
/// backing off from 0.5 s up to [`MAX_BACKOFF`]; a session that lasted resets the backoff.
async fn keep_registered(sup: Arc<Supervisor>, registry: Registry, held: Arc<AtomicI64>) {
    let address = advertised(&sup);
    let ttl = sup.config().register_ttl;
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = tokio::time::Instant::now();
        let session = lease::Session {
            registry: &registry,
            key: format!("{}{}", registry.prefix, key_of(&address)),
            ttl,
            held: &held,
        };
        let err = session
            .run(|| {
                let sup = sup.clone();
                let address = address.clone();
                async move { record(&sup, &address).await }
            })
            .await;
        held.store(0, Ordering::SeqCst);
        if started.elapsed() > ttl {
            backoff = Duration::from_millis(500);
        }
        tracing::warn!(registry = %registry.endpoint, error = %format!("{err:#}"), retry_in = ?backoff, "not registered in etcd; trying again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The key's last part: the address without its scheme (`HOST:PORT`).
fn key_of(address: &str) -> &str {
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
