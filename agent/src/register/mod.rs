//! The agent announcing itself (`register = "etcd://HOST:2379/PREFIX"`): its address, version,
//! labels and capacity under `/PREFIX/agents/HOST:PORT`, a key bound to an etcd lease the
//! agent keeps alive. A stopped agent revokes its lease (its key goes at once); a killed or
//! cut-off one stops renewing it, and etcd deletes the key within the lease's TTL. Fleet envs
//! (`deployctl declare env fleet`) read these keys.
//!
//! A lost etcd is never fatal: the agent logs it and tries again, backing off up to
//! [`MAX_BACKOFF`], while its deployments carry on.

mod lease;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use deployctl_proto::registry::{check_labels, Registry};
use deployctl_proto::registry::{key_of, Record};

use crate::supervisor::Supervisor;

/// The longest wait between two attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
