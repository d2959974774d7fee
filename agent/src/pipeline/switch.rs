//! switch (`strategy: switch`): the new release is healthy on its private port; the node
//! proxy's route for the deployment's port now sends new requests to it, and the previous
//! release finishes the requests it has (drains, up to `drain_timeout`) before it stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{self, Events, StepError};
use super::start::Started;
use crate::instance::Instance;
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// How often the proxy is asked whether the old release still has requests in flight.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Routes the deployment's port to the new release. Fails (and nothing changes) when the
/// proxy cannot take the port.
pub(super) async fn switch(
    sup: &Supervisor,
    release: &ReleaseRecord,
    private_ports: &[u16],
    events: &Events,
) -> Result<(), StepError> {
    let route = crate::launch::route(sup, release, private_ports);
    let began = Instant::now();
    let on: Vec<String> = private_ports
        .iter()
        .map(|p| crate::launch::private_address(sup, *p).to_string())
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
    let client = sup
        .proxy()
        .client()
        .await
        .map_err(|e| StepError::new(events::SWITCH, e))?;
    if let Err(e) = client.set_route(route).await {
        let err = StepError::new(events::SWITCH, e);
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

/// The previous release's instances, drained, to stop once the deploy has answered (the
/// client does not wait for an old app's exit).
pub(super) struct Retiring {
    deployment: String,
    first: Arc<Instance>,
    replicas: Vec<Arc<Instance>>,
}

impl Retiring {
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

/// Lets the previous release finish its requests (behind the node proxy: how long that
/// took); what is left to stop.
pub(super) async fn drain_previous(
    sup: &Supervisor,
    release: &ReleaseRecord,
    started: &Started,
    events: &Events,
) -> (Option<Duration>, Option<Retiring>) {
    let Some(prev) = started
        .previous
        .as_ref()
        .filter(|_| !started.previous_stopped)
    else {
        return (None, None);
    };
    let began = Instant::now();
    let mut drained = None;
    if started.previous_port.is_some() {
        let listen = crate::launch::public_address(sup, release);
        let old: Vec<SocketAddr> = started
            .previous_ports
            .iter()
            .map(|p| crate::launch::private_address(sup, *p))
            .collect();
        let in_flight = || async {
            let mut n = 0;
            for addr in &old {
                n += sup.proxy().in_flight(listen, Some(*addr)).await;
            }
            n
        };
        let deadline = began + release.spec.drain_timeout;
        while in_flight().await > 0 && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let left = in_flight().await;
        drained = Some(began.elapsed());
        events.info(
            events::SWITCH,
            if left == 0 {
                format!(
                    "release {} drained in {} ms",
                    prev.release,
                    began.elapsed().as_millis()
                )
            } else {
                format!(
                    "release {} still had {left} requests after the drain timeout ({}); stopping it",
                    prev.release,
                    humantime::format_duration(release.spec.drain_timeout)
                )
            },
        );
    }
    let retiring = Retiring {
        deployment: release.spec.name.clone(),
        first: prev.clone(),
        replicas: started.previous_replicas.clone(),
    };
    (drained, Some(retiring))
}
