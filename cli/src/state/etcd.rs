//! The etcd backend: one key per deployment under a prefix
//! (`<prefix>/deployments/<name>` = its JSON), read with one range request and written
//! with a transaction that succeeds only if none of the keys it changes was changed since
//! they were read (mod_revision compare, or "does not exist" for new keys). On a conflict
//! the change is applied again to fresh data, so concurrent writers never lose an update,
//! and writers of different deployments never conflict at all.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context};
use deployctl_proto::etcd::etcdserverpb::{
    compare, kv_client::KvClient, request_op, Compare, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::{BoxFuture, Change, DeploymentState, State, StateStore};

/// Attempts of one update before giving up (each conflict means another writer won).
const MAX_ATTEMPTS: u32 = 200;

pub(crate) struct EtcdState {
    /// `http://HOST:PORT`
    endpoint: String,
    /// `/PREFIX/deployments/`
    prefix: String,
    /// What to check when etcd does not answer ("check core.state.uri in .deployctl.yaml"),
    /// or nothing.
    advice: String,
}

impl EtcdState {
    /// `HOST:PORT/PREFIX` (the part after `etcd://`); the prefix defaults to `deployctl`.
    /// `advice`: what to check when etcd does not answer (empty: nothing said).
    pub(crate) fn parse(rest: &str, advice: &str) -> Result<EtcdState, String> {
        let (hostport, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p.trim_matches('/')),
            None => (rest, ""),
        };
        let port_ok = hostport
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err("expected etcd://HOST:PORT/PREFIX".to_string());
        }
        let prefix = if prefix.is_empty() {
            "deployctl"
        } else {
            prefix
        };
        Ok(EtcdState {
            endpoint: format!("http://{hostport}"),
            prefix: format!("/{prefix}/deployments/"),
            advice: advice.to_string(),
        })
    }

    async fn client(&self) -> anyhow::Result<KvClient<Channel>> {
        let channel = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| anyhow!("etcd address {}: {e}", self.endpoint))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| {
                let advice = if self.advice.is_empty() {
                    String::new()
                } else {
                    format!("; {}", self.advice)
                };
                anyhow!("etcd at {} does not answer ({e}){advice}", self.endpoint)
            })?;
        Ok(KvClient::new(channel))
    }

    fn key(&self, name: &str) -> Vec<u8> {
        format!("{}{name}", self.prefix).into_bytes()
    }

    /// Every deployment and the mod_revision of its key.
    async fn read(
        &self,
        kv: &mut KvClient<Channel>,
    ) -> anyhow::Result<(State, BTreeMap<String, i64>)> {
        let start = self.prefix.as_bytes().to_vec();
        let reply = kv
            .range(RangeRequest {
                key: start.clone(),
                range_end: prefix_end(&start),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow!("reading state from etcd {}: {}", self.endpoint, s.message()))?
            .into_inner();
        let mut state = State {
            version: 1,
            ..Default::default()
        };
        let mut revisions = BTreeMap::new();
        for item in reply.kvs {
            let key = String::from_utf8_lossy(&item.key).into_owned();
            let name = key.trim_start_matches(&self.prefix).to_string();
            let dep: DeploymentState = serde_json::from_slice(&item.value)
                .with_context(|| format!("etcd key {key} does not hold a valid deployment"))?;
            state.deployments.insert(name.clone(), dep);
            revisions.insert(name, item.mod_revision);
        }
        Ok((state, revisions))
    }

    async fn try_update(
        &self,
        kv: &mut KvClient<Channel>,
        change: Change<'_>,
    ) -> anyhow::Result<bool> {
        let (before, revisions) = self.read(kv).await?;
        let mut after = before.clone();
        change(&mut after)?;
        let mut names: Vec<&String> = before.deployments.keys().collect();
        names.extend(after.deployments.keys());
        names.sort();
        names.dedup();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for name in names {
            let (old, new) = (before.deployments.get(name), after.deployments.get(name));
            if old == new {
                continue;
            }
            let key = self.key(name);
            compares.push(match revisions.get(name) {
                Some(rev) => Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: key.clone(),
                    target_union: Some(compare::TargetUnion::ModRevision(*rev)),
                    range_end: vec![],
                },
                // A new key: it must still not exist (create_revision 0).
                None => Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: key.clone(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    range_end: vec![],
                },
            });
            ops.push(RequestOp {
                request: Some(match new {
                    Some(dep) => request_op::Request::RequestPut(PutRequest {
                        key,
                        value: serde_json::to_vec(dep).context("encoding state")?,
                        ..Default::default()
                    }),
                    None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..Default::default()
                    }),
                }),
            });
        }
        if ops.is_empty() {
            return Ok(true);
        }
        let reply = kv
            .txn(TxnRequest {
                compare: compares,
                success: ops,
                failure: vec![],
            })
            .await
            .map_err(|s| anyhow!("writing state to etcd {}: {}", self.endpoint, s.message()))?
            .into_inner();
        Ok(reply.succeeded)
    }
}

/// The end of the key range with this prefix (the prefix with its last byte plus one).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl StateStore for EtcdState {
    fn load(&self) -> BoxFuture<'_, State> {
        Box::pin(async move {
            let mut kv = self.client().await?;
            Ok(self.read(&mut kv).await?.0)
        })
    }

    fn update<'a>(&'a self, change: Change<'a>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut kv = self.client().await?;
            for attempt in 0..MAX_ATTEMPTS {
                if self.try_update(&mut kv, &mut *change).await? {
                    return Ok(());
                }
                // Another writer won: back off a little (spread by pid) and try again.
                let jitter = (std::process::id() % 7) as u64 + u64::from(attempt.min(20));
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            }
            Err(anyhow!(
                "the state in etcd {} kept changing under this update ({MAX_ATTEMPTS} attempts); try again",
                self.endpoint
            ))
        })
    }

    fn describe(&self) -> String {
        format!("etcd {}{}", self.endpoint, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let s = EtcdState::parse("127.0.0.1:2379/team", "").unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:2379");
        assert_eq!(s.prefix, "/team/deployments/");
        assert_eq!(
            EtcdState::parse("h:1", "").unwrap().prefix,
            "/deployctl/deployments/"
        );
        assert!(EtcdState::parse("nohost", "").is_err());
        assert!(EtcdState::parse("h:99999/x", "").is_err());
    }

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }
}
