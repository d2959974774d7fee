//! What `/metrics` and the load balancers' health endpoints read of the deployments: from
//! their views and cached state, never by probing.

use crate::instance::State;
use crate::supervisor::Supervisor;

impl Supervisor {
    /// Every deployment's present state and resource use, for `/metrics`.
    pub(crate) fn present(&self) -> Vec<crate::metrics::Present> {
        self.registry()
            .all()
            .iter()
            .map(|d| {
                let v = self.view(d);
                crate::metrics::Present {
                    deployment: v.name,
                    state: v.state.as_str(),
                    cpu_percent: v.cpu_percent,
                    memory_bytes: v.memory_bytes,
                    memory_limit: v.kernel.memory_limit,
                    live_runs: v.live_runs,
                    replicas: v.running_replicas,
                }
            })
            .collect()
    }

    /// What the node proxy served for each deployment (its last counts), for `/metrics`.
    pub(crate) fn served(&self) -> Vec<crate::metrics::Served> {
        let routes = self.traffic().latest();
        if routes.is_empty() {
            return Vec::new();
        }
        self.registry()
            .all()
            .iter()
            .filter_map(|d| {
                let listen = self.app_host().public_address(d.current()?.spec.port);
                let route = routes.iter().find(|r| r.listen == listen)?;
                let mut releases: Vec<(u32, crate::proxy::Counts, u64)> = Vec::new();
                for b in route.serving.iter().chain(&route.draining) {
                    match releases.iter_mut().find(|(r, _, _)| *r == b.release) {
                        Some((_, counts, in_flight)) => {
                            counts.add(&b.counts);
                            *in_flight += b.in_flight;
                        }
                        None => releases.push((b.release, b.counts.clone(), b.in_flight)),
                    }
                }
                Some(crate::metrics::Served {
                    deployment: d.name().to_string(),
                    releases,
                    totals: route.totals.clone(),
                    unavailable: route.unavailable,
                })
            })
            .collect()
    }

    /// Whether a deployment is healthy right now (for load balancers; from cached state):
    /// healthy while any instance on the node is (the node proxy serves from it), not while
    /// it drains for removal. With replicas, the ones that are not healthy, and why.
    pub(crate) fn healthy(&self, name: &str) -> Option<LbHealth> {
        let d = self.registry().get(name)?;
        d.lb_checked();
        let first = d.instance().map(|i| i.snapshot());
        let replicas: Vec<_> = d.replicas().iter().map(|r| r.snapshot()).collect();
        let ports = d.private_ports();
        let proxy_trouble = d.private_port().and(self.proxy().trouble());
        let healthy_one = first
            .iter()
            .chain(&replicas)
            .find(|s| s.state == State::Healthy);
        let (healthy, state, last_check) = match &first {
            _ if d.is_draining() => (false, "draining", "the deployment is being removed".into()),
            _ if proxy_trouble.is_some() => (
                false,
                crate::proxy::NOT_ANSWERING_STATE,
                proxy_trouble.unwrap_or_default(),
            ),
            Some(s) if s.state != State::Healthy && healthy_one.is_some() => {
                let r = healthy_one.unwrap_or(s);
                (true, r.state.as_str(), r.last_health.clone())
            }
            Some(s) => (
                s.state == State::Healthy,
                s.state.as_str(),
                s.last_health.clone(),
            ),
            // It can serve: a request wakes it (and waits for it).
            None if d.sleep_state().waking.is_some() => (
                true,
                State::Waking.as_str(),
                "a request came while it slept: it is starting".into(),
            ),
            None if d.is_sleeping() => (
                true,
                State::Sleeping.as_str(),
                "sleeping after a while without a request: the next request wakes it".into(),
            ),
            None => (false, State::Stopped.as_str(), String::new()),
        };
        let all: Vec<_> = first.iter().chain(&replicas).collect();
        let unhealthy = if all.len() > 1 {
            all.iter()
                .enumerate()
                .filter(|(_, s)| s.state != State::Healthy)
                .map(|(i, s)| UnhealthyInstance {
                    instance: i + 1,
                    address: ports
                        .get(i)
                        .map(|p| self.app_host().private_address(*p).to_string())
                        .unwrap_or_default(),
                    state: s.state.as_str(),
                    last_check: s.last_health.clone(),
                    reason: s.message.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(LbHealth {
            healthy,
            state,
            last_check,
            instances: all.len(),
            unhealthy,
        })
    }
}

/// What a deployment's health endpoint says.
#[derive(Debug, Clone)]
pub(crate) struct LbHealth {
    pub healthy: bool,
    pub state: &'static str,
    pub last_check: String,
    /// Its instances on this node.
    pub instances: usize,
    /// With replicas: the instances that are not healthy (out of traffic, restarting).
    pub unhealthy: Vec<UnhealthyInstance>,
}

/// One instance of a deployment with replicas that is not healthy.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct UnhealthyInstance {
    /// 1: the first instance, 2..: the replicas.
    pub instance: usize,
    /// Where it listens behind the node proxy.
    pub address: String,
    pub state: &'static str,
    pub last_check: String,
    pub reason: String,
}
