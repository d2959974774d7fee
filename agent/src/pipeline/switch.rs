//! switch (`strategy: switch`): the new release is healthy on its private port; the node
//! proxy's route for the deployment's port now sends new requests to it. After the deploy
//! has answered, the previous release finishes the requests it has (drains, up to
//! `drain_timeout`) and stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{self, Events, StepError};
use super::start::Started;
use crate::instance::Instance;
use crate::store::ReleaseRecord;
use crate::supervisor::NodeServices;

/// How often the proxy is asked whether the old release still has requests in flight.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Routes the deployment's port to the new release. Fails (and nothing changes) when the
/// proxy cannot take the port.
pub(super) async fn switch(
    node: &NodeServices,
    release: &ReleaseRecord,
    private_ports: &[u16],
    owner: Option<u32>,
    events: &Events,
) -> Result<(), StepError> {
    let route = crate::launch::route(node.app_host(), release, private_ports, owner);
    let began = Instant::now();
    let on: Vec<String> = private_ports
        .iter()
        .map(|p| node.app_host().private_address(*p).to_string())
        .collect();
    events.emit(
        events::SWITCH,
        events::Phase::Started,
        format!(
            "{} → release {} on {}",
            route.listen,
            release.number,
            on.join(", ")
        ),
        Duration::ZERO,
    );
    if let Err(e) = node.proxy().switch_route(route).await {
        let err = StepError::new(events::SWITCH, e.to_string());
        events.emit(
            events::SWITCH,
            events::Phase::Failed,
            err.reason.clone(),
            began.elapsed(),
        );
        return Err(err);
    }
    events.emit(
        events::SWITCH,
        events::Phase::Done,
        format!("new requests go to release {}", release.number),
        began.elapsed(),
    );
    Ok(())
}

/// The previous release's instances, to drain and stop once the deploy has answered: the
/// deploy's time ends at the switch, and the client does not wait for an old app's exit.
pub(super) struct Retiring {
    deployment: String,
    first: Arc<Instance>,
    replicas: Vec<Arc<Instance>>,
    /// Behind the node proxy: the public address, the old instances' private addresses,
    /// and how long they may take to finish their requests.
    drain: Option<Drain>,
}

struct Drain {
    listen: SocketAddr,
    old: Vec<SocketAddr>,
    timeout: Duration,
}

impl Retiring {
    /// What ran before `release` and still runs (not stopped for the port), if anything.
    pub(super) fn of(
        node: &NodeServices,
        release: &ReleaseRecord,
        started: &Started,
    ) -> Option<Retiring> {
        let prev = started
            .previous
            .as_ref()
            .filter(|_| !started.handover.stops_previous())?;
        let drain = started.previous_port.map(|_| Drain {
            listen: node.app_host().public_address(release.spec.port),
            old: started
                .previous_ports
                .iter()
                .map(|p| node.app_host().private_address(*p))
                .collect(),
            timeout: release.spec.drain_timeout,
        });
        Some(Retiring {
            deployment: release.spec.name.clone(),
            first: prev.clone(),
            replicas: started.previous_replicas.clone(),
            drain,
        })
    }

    /// Lets the previous release finish the requests the node proxy still has on it (up to
    /// `drain_timeout`), and says how long that took; `None` when it is not behind the proxy.
    pub(super) async fn drain(&self, node: &NodeServices, events: &Events) -> Option<Duration> {
        let drain = self.drain.as_ref()?;
        let began = Instant::now();
        let in_flight = || async {
            let mut n = 0;
            for addr in &drain.old {
                n += node.proxy().in_flight(drain.listen, Some(*addr)).await;
            }
            n
        };
        let deadline = began + drain.timeout;
        while in_flight().await > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let left = in_flight().await;
        let took = began.elapsed();
        let release = self.first.release;
        events.info(
            events::SWITCH,
            if left == 0 {
                format!("release {release} drained in {} ms", took.as_millis())
            } else {
                format!(
                    "release {release} still had {left} requests after the drain timeout ({}); stopping it",
                    humantime::format_duration(drain.timeout)
                )
            },
        );
        Some(took)
    }

    /// Stops every instance of the previous release at once.
    pub(super) async fn stop(self) {
        let replicas: Vec<_> = self
            .replicas
            .into_iter()
            .map(|r| tokio::spawn(async move { r.stop().await }))
            .collect();
        let (pid, how) = self.first.stop().await;
        for r in replicas {
            let _ = r.await;
        }
        tracing::info!(
            deployment = %self.deployment,
            release = self.first.release,
            pid = ?pid,
            how = how.as_str(),
            "stopped the previous release"
        );
    }
}
