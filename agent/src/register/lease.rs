//! One registration session with etcd: a lease granted, the record put under it, the lease
//! renewed every third of its TTL over etcd's keep-alive stream and the record written again
//! whenever it changed. The session ends (with the reason) when etcd stops answering or the
//! lease expired; the caller starts another.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use deployctl_proto::etcd::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseRevokeRequest, PutRequest,
};
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

use super::{Record, Registry};

/// A connection to etcd, made within `timeout`. No request timeout on the channel: it would
/// end the keep-alive stream; unary calls are bounded by [`bounded`].
async fn channel(registry: &Registry, timeout: Duration) -> anyhow::Result<Channel> {
    Endpoint::from_shared(registry.endpoint.clone())
        .map_err(|e| anyhow!("etcd address {}: {e}", registry.endpoint))?
        .connect_timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("etcd at {} does not answer", registry.endpoint))
}

/// `call`, or an error saying what did not answer within `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(reply)) => Ok(reply.into_inner()),
        Ok(Err(s)) => Err(anyhow!("{what}: {}", s.message())),
        Err(_) => Err(anyhow!("{what}: no answer within {limit:?}")),
    }
}

/// Revokes lease `id`: its keys are deleted at once.
pub(super) async fn revoke(registry: &Registry, id: i64) -> anyhow::Result<()> {
    let channel = channel(registry, Duration::from_secs(2)).await?;
    let mut leases = LeaseClient::new(channel);
    let revoke = leases.lease_revoke(LeaseRevokeRequest { id });
    bounded(Duration::from_secs(2), "revoking the lease", revoke).await?;
    Ok(())
}

pub(super) struct Session<'a> {
    pub registry: &'a Registry,
    /// `/PREFIX/agents/HOST:PORT`
    pub key: String,
    pub ttl: Duration,
    /// Where the lease now held is published (for a revoke at shutdown).
    pub held: &'a AtomicI64,
}

impl Session<'_> {
    /// Registers and keeps the registration alive; returns only why it ended.
    pub(super) async fn run<F, Fut>(self, record: F) -> anyhow::Error
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Record>,
    {
        match self.try_run(record).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn try_run<F, Fut>(&self, record: F) -> anyhow::Result<std::convert::Infallible>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Record>,
    {
        let at = &self.registry.endpoint;
        let ttl_s = self.ttl.as_secs().max(1) as i64;
        // A call may take at most a third of the TTL, so a renewal is never late by more.
        let call = (self.ttl / 3).max(Duration::from_millis(500));
        let channel = channel(self.registry, call).await?;
        let mut leases = LeaseClient::new(channel.clone());
        let mut kv = KvClient::new(channel);
        let grant = bounded(
            call,
            &format!("etcd {at}: granting a lease"),
            leases.lease_grant(LeaseGrantRequest { ttl: ttl_s, id: 0 }),
        )
        .await?;
        if !grant.error.is_empty() {
            bail!("etcd {at}: granting a lease: {}", grant.error);
        }
        let id = grant.id;
        self.held.store(id, Ordering::SeqCst);
        let mut last = record().await;
        self.put(&mut kv, &last, id).await?;
        tracing::info!(registry = %at, key = %self.key, ttl = ?self.ttl, labels = ?last.labels, "registered in etcd");

        // The first renewal is queued before the stream opens: etcd answers the stream's
        // headers with its first reply.
        let (tx, rx) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(1);
        let renew = || async {
            tx.send(LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| anyhow!("etcd {at}: the keep-alive stream closed"))
        };
        renew().await?;
        let mut replies = bounded(
            call,
            &format!("etcd {at}: keeping the lease alive"),
            leases.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await?;
        let period = self.ttl / 3;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reply = tokio::time::timeout(call, replies.next())
                .await
                .map_err(|_| anyhow!("etcd {at}: no keep-alive answer within {call:?}"))?
                .ok_or_else(|| anyhow!("etcd {at}: the keep-alive stream ended"))?
                .map_err(|s| anyhow!("etcd {at}: keeping the lease alive: {}", s.message()))?;
            if reply.ttl <= 0 {
                bail!("etcd {at}: the lease expired (the agent was cut off longer than its TTL)");
            }
            let now = record().await;
            if now != last {
                self.put(&mut kv, &now, id).await?;
                last = now;
            }
            tick.tick().await;
            renew().await?;
        }
    }

    async fn put(
        &self,
        kv: &mut KvClient<Channel>,
        record: &Record,
        lease: i64,
    ) -> anyhow::Result<()> {
        let value = serde_json::to_vec(record).context("encoding the registration")?;
        let put = kv.put(PutRequest {
            key: self.key.clone().into_bytes(),
            value,
            lease,
            ..Default::default()
        });
        let what = format!("etcd {}: writing {}", self.registry.endpoint, self.key);
        bounded((self.ttl / 3).max(Duration::from_millis(500)), &what, put).await?;
        Ok(())
    }
}
