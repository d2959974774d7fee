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
    /// healthy, its state, the last check's result. Unhealthy while it drains for removal.
    pub(crate) fn healthy(&self, name: &str) -> Option<(bool, &'static str, String)> {
        let d = self.registry().get(name)?;
        d.lb_checked();
        // With replicas: healthy while any instance is (the node proxy serves from it).
        let healthy_replica = d
            .replicas()
            .iter()
            .map(|r| r.snapshot())
            .find(|s| s.state == State::Healthy);
        let proxy_trouble = d.private_port().and(self.proxy().trouble());
        Some(match d.instance().map(|i| i.snapshot()) {
            _ if d.is_draining() => (false, "draining", "the deployment is being removed".into()),
            _ if proxy_trouble.is_some() => (
                false,
                crate::proxy::NOT_ANSWERING_STATE,
                proxy_trouble.unwrap_or_default(),
            ),
            Some(s) if s.state != State::Healthy && healthy_replica.is_some() => {
                let r = healthy_replica.unwrap_or(s);
                (true, r.state.as_str(), r.last_health)
            }
            Some(s) => (s.state == State::Healthy, s.state.as_str(), s.last_health),
            None => (false, State::Stopped.as_str(), String::new()),
        })
    }
}
