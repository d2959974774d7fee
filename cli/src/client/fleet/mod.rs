//! Fleet envs (`type: fleet`): their agents are those registered in etcd (by
//! `deploy-agent`'s `register`), alive (their lease not expired) and matching the selector;
//! with `count`, a deploy goes to the N with the most room for it ([`select::place`]).

mod explain;
mod select;

use std::time::Duration;

use anyhow::{anyhow, Context};
use deployctl_proto::etcd::etcdserverpb::{kv_client::KvClient, RangeRequest};
use deployctl_proto::registry::{Record, Registry};
use tonic::transport::Endpoint;

pub(crate) use select::{place, Choice, Need, Selector};

use crate::decl::{DeploymentDecl, EnvDecl};
use crate::error::bad_input;

/// A fleet env as resolved: its registry, selector and count, and the live agents matching.
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    /// `etcd://HOST:PORT/PREFIX`, as declared.
    pub registry: String,
    pub select: String,
    pub count: Option<u32>,
    /// Registered, alive and matching, by address.
    pub agents: Vec<Record>,
    /// Registered and alive but not matching, with the term that failed.
    pub unmatched: Vec<(String, String)>,
}

impl Fleet {
    /// Which agents a deploy of `d` goes to, with why: with `count`, those with the most room
    /// ([`place`]; `running`: the agents that run it now); without, every matching one (each
    /// agent's own preflight refuses what does not fit, as in a typed env).
    pub(crate) fn choose(&self, d: &DeploymentDecl, running: &[String]) -> Vec<Choice> {
        match self.count {
            Some(n) => place(&self.agents, n as usize, need_of(d), running),
            None => self
                .agents
                .iter()
                .map(|r| Choice {
                    address: r.address.clone(),
                    picked: true,
                    why: "matches (no count: every matching agent)".into(),
                })
                .collect(),
        }
    }

    /// The agents a deploy of `d` goes to (`running`: where it runs now); none is an error
    /// that says what the registry holds.
    pub(crate) fn targets(
        &self,
        env: &str,
        d: &DeploymentDecl,
        running: &[String],
    ) -> anyhow::Result<Vec<String>> {
        let picked: Vec<String> = self
            .choose(d, running)
            .into_iter()
            .filter(|c| c.picked)
            .map(|c| c.address)
            .collect();
        if picked.is_empty() {
            let why = if self.agents.is_empty() {
                format!(
                    "no live agent registered there matches {:?} ({} registered and alive)",
                    self.select,
                    self.unmatched.len()
                )
            } else {
                "none of the matching agents has room for it (`deployctl plan` says why)".into()
            };
            anyhow::bail!("env {env} (fleet in {}): {why}", self.registry);
        }
        if let Some(n) = self.count.filter(|n| (*n as usize) > picked.len()) {
            eprintln!(
                "warning: env {env}: {} of the {n} agents asked (count) have room for it",
                picked.len()
            );
        }
        Ok(picked)
    }
}

/// What a deployment asks of a node: its memory limit and GPUs, times its replicas (with
/// replicas that follow the load, its `max`: a node picked has room for the peak).
fn need_of(d: &DeploymentDecl) -> Need {
    let replicas = d.replicas.as_ref().map_or(1, |r| r.most()).max(1);
    match d.resources.to_pb() {
        Ok(Some(r)) => Need {
            memory: r.memory.saturating_mul(u64::from(replicas)),
            gpus: r.gpus.saturating_mul(replicas),
        },
        _ => Need::default(),
    }
}

/// Checks a fleet declaration's own fields (`at`: the file, for messages).
pub(crate) fn validate(at: &str, env: &EnvDecl) -> anyhow::Result<()> {
    let Some(registry) = &env.registry else {
        return Err(bad_input(format!(
            "{at}: registry: required for a fleet env (--registry etcd://HOST:2379/PREFIX)"
        )));
    };
    Registry::parse(registry).map_err(|e| bad_input(format!("{at}: registry: {e}")))?;
    Selector::parse(env.select.as_deref().unwrap_or(""))
        .map_err(|e| bad_input(format!("{at}: select: {e}")))?;
    if env.count == Some(0) {
        return Err(bad_input(format!("{at}: count: must be at least 1")));
    }
    if !env.addresses.is_empty() {
        return Err(bad_input(format!(
            "{at}: addresses: a fleet env finds its agents in its registry; give no addresses"
        )));
    }
    Ok(())
}

/// The fleet as the registry has it now (read within `timeout`).
pub(crate) fn resolve(env: &EnvDecl, timeout: Duration) -> anyhow::Result<Fleet> {
    let uri = env.registry.clone().unwrap_or_default();
    let registry = Registry::parse(&uri).map_err(|e| bad_input(format!("registry: {e}")))?;
    let select = env.select.clone().unwrap_or_default();
    let selector = Selector::parse(&select).map_err(|e| bad_input(format!("select: {e}")))?;
    let records = block_on(list(registry, timeout))
        .and_then(|r| r)
        .with_context(|| format!("reading the fleet's agents from {uri}"))?;
    let mut agents = Vec::new();
    let mut unmatched = Vec::new();
    for r in records {
        match selector.check(&r) {
            Ok(()) => agents.push(r),
            Err(why) => unmatched.push((r.address.clone(), why)),
        }
    }
    Ok(Fleet {
        registry: uri,
        select,
        count: env.count,
        agents,
        unmatched,
    })
}

/// Every agent registered under the registry's prefix (those whose lease expired are gone),
/// by address; a key that does not hold a record is skipped.
async fn list(registry: Registry, timeout: Duration) -> anyhow::Result<Vec<Record>> {
    let channel = Endpoint::from_shared(registry.endpoint.clone())
        .map_err(|e| anyhow!("etcd address {}: {e}", registry.endpoint))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| anyhow!("etcd at {} does not answer ({e})", registry.endpoint))?;
    let start = registry.prefix.as_bytes().to_vec();
    let reply = KvClient::new(channel)
        .range(RangeRequest {
            range_end: crate::state::prefix_end(&start),
            key: start,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow!("etcd {}: {}", registry.endpoint, s.message()))?
        .into_inner();
    let mut records: Vec<Record> = reply
        .kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Record>(&kv.value).ok())
        .filter(|r| !r.address.is_empty())
        .collect();
    records.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(records)
}

/// Runs `f` to completion from synchronous code, whether or not a runtime is running on
/// this thread: on a thread of its own, with a runtime of its own.
fn block_on<F>(f: F) -> anyhow::Result<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(f))
        })
        .join()
    })
    .map_err(|_| anyhow!("the registry's reader panicked"))?
    .context("starting a runtime to read the registry")
}
