//! start: the new release's process, under a new instance. When the previous release
//! listens on the same port it is stopped first (it finishes exiting in the background
//! once the port is free), as is an app an earlier agent run left; then the port must be
//! free of this deployment's exiting processes and of foreign ones.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::events::{self, Events, StepError};
use super::handover::{Handover, Ports};
use super::{port_wait, preflight, Prepared};
use crate::deployment::Deployment;
use crate::instance::{Instance, StartFailure};
use crate::process::Stopped;
use crate::spec::Spec;
use crate::supervisor::{stop_recorded, Supervisor};

/// Learns once whether an instance of the new release became healthy (with its pid).
pub(super) type Ready = oneshot::Receiver<Result<u32, StartFailure>>;

/// The new release's instance, and what it replaced.
pub(super) struct Started {
    pub instance: Arc<Instance>,
    /// Learns once whether the new release became healthy (with its pid).
    pub ready: Ready,
    /// The release that served before, if any.
    pub previous: Option<Arc<Instance>>,
    /// Its private port behind the node proxy, if it had one.
    pub previous_port: Option<u16>,
    /// How the new release takes over from it.
    pub handover: Handover,
    /// The new release's private port behind the node proxy (`strategy: switch`).
    pub private_port: Option<u16>,
    /// Its other instances (`replicas` > 1), each learning whether it became healthy, on
    /// its private port.
    pub replicas: Vec<(Arc<Instance>, Ready, u16)>,
    /// The previous release's other instances, and all its private ports.
    pub previous_replicas: Vec<Arc<Instance>>,
    pub previous_ports: Vec<u16>,
}

/// The start step in phases: the logs' directory, what serves now (read once), the
/// handover chosen, way made for the new release, and its instances launched.
pub(super) async fn start(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    spec: &Spec,
    prepared: &Prepared,
    events: &Events,
) -> Result<Started, StepError> {
    logs_dir(sup, spec).await?;
    let current = d.current();
    let previous = d.instance();
    let previous_port = d.private_port();
    let previous_replicas = d.replicas();
    let previous_ports = d.private_ports();
    let handover = Handover::choose(Ports {
        new_beside: prepared.private_port.is_some(),
        new_port: spec.port,
        previous_private: previous_port,
        current_port: current.as_ref().map(|r| r.spec.port),
        previous_runs: previous.is_some(),
    });
    make_way(
        sup,
        d,
        spec,
        current.as_ref(),
        previous.as_ref(),
        handover,
        events,
    )
    .await?;
    let (instance, ready, replicas) = launch(sup, d, spec, prepared, handover, events).await;
    Ok(Started {
        instance,
        ready,
        previous,
        previous_port,
        handover,
        private_port: prepared.private_port,
        replicas,
        previous_replicas,
        previous_ports,
    })
}

/// Creates the deployment's logs directory (private), if it is not there yet.
async fn logs_dir(sup: &Supervisor, spec: &Spec) -> Result<(), StepError> {
    let logs = sup.layout().logs(&spec.name);
    let l = logs.clone();
    let made = tokio::task::spawn_blocking(move || {
        crate::fsmode::create_dir(&l, crate::fsmode::PRIVATE_DIR)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    if let Err(e) = made {
        return Err(StepError::new(
            events::START,
            format!("cannot create {}: {e}", logs.display()),
        ));
    }
    Ok(())
}

/// Makes way for the new release as the handover says: the deployment leaves the node
/// proxy, the previous release stops for the port, an app an earlier agent run left stops;
/// then the port must be free of this deployment's exiting processes and of foreign ones.
async fn make_way(
    sup: &Supervisor,
    d: &Deployment,
    spec: &Spec,
    current: Option<&crate::store::ReleaseRecord>,
    previous: Option<&Arc<Instance>>,
    handover: Handover,
    events: &Events,
) -> Result<(), StepError> {
    if let (Handover::LeaveProxy, Some(release)) = (handover, current) {
        leave_proxy(sup, d, release, events).await;
    }
    if let Some(prev) = previous.filter(|_| handover.stops_previous()) {
        lb_drain(sup, d, prev.release, events).await;
        stop_for_port(prev, spec, events).await;
        d.stopped_for_port();
    }
    // An app left running by an earlier run of the agent is stopped the same way.
    if previous.is_none() {
        stop_orphan(d, spec, events).await;
    }
    // The previous release may hold the port a little longer than its main process lives
    // (threads that outlive it): wait for it, up to its kill timeout.
    let grace = current
        .filter(|_| previous.is_some())
        .map(|r| r.spec.kill_timeout)
        .unwrap_or(spec.kill_timeout);
    if handover.needs_the_port() {
        port_wait::own_holders_gone(sup, spec, grace, events).await?;
    }
    // A foreign process may have taken the port while we were preparing.
    preflight::foreign_port_holder(sup, spec).await
}

/// Stops the app an earlier run of the agent recorded and left running, if it still runs.
async fn stop_orphan(d: &Deployment, spec: &Spec, events: &Events) {
    let orphan = d.recorded_process();
    if let Some((id, _, tracking)) = orphan.filter(|(id, _, _)| id.is_running()) {
        let how = stop_recorded(id, tracking, spec.kill_timeout).await;
        events.info(
            events::START,
            format!(
                "stopped the app left by an earlier agent run (pid {}, {})",
                id.pid,
                how.as_str()
            ),
        );
    }
}

/// Starts the new release's instances (its first, then each replica on its private port);
/// beside a release that still serves, the new one is the deployment's once traffic
/// switches to it, otherwise at once.
async fn launch(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    spec: &Spec,
    prepared: &Prepared,
    handover: Handover,
    events: &Events,
) -> (Arc<Instance>, Ready, Vec<(Arc<Instance>, Ready, u16)>) {
    let cfg =
        crate::launch::instance_config(sup, d, &prepared.release, prepared.private_port, 0).await;
    let started = Instant::now();
    events.emit(
        events::START,
        events::Phase::Started,
        format!("sh -c {:?}", spec.command),
        Default::default(),
    );
    let (instance, ready) = Instance::start(cfg);
    let instance = Arc::new(instance);
    let mut replicas = Vec::new();
    for (i, port) in prepared.replica_ports.iter().enumerate() {
        let cfg =
            crate::launch::instance_config(sup, d, &prepared.release, Some(*port), i + 1).await;
        let (replica, ready) = Instance::start(cfg);
        replicas.push((Arc::new(replica), ready, *port));
    }
    if handover.new_serves_at_start() {
        d.serve_from_start(instance.clone());
    }
    events.emit(
        events::START,
        events::Phase::Done,
        pids_message(&instance, &replicas),
        started.elapsed(),
    );
    (instance, ready, replicas)
}

/// What the start step says when done: the pids of the new release's instances.
fn pids_message(instance: &Arc<Instance>, replicas: &[(Arc<Instance>, Ready, u16)]) -> String {
    let pids: Vec<String> = std::iter::once(instance)
        .chain(replicas.iter().map(|(r, _, _)| r))
        .filter_map(|i| i.snapshot().pid.map(|p| p.to_string()))
        .collect();
    match pids.len() {
        0 => "started".to_string(),
        1 => format!("pid {}", pids[0]),
        _ => format!("{} replicas: pids {}", pids.len(), pids.join(", ")),
    }
}

/// The deployment moves off the node proxy: its route goes (the proxy lets go of the public
/// port) and the previous release's replicas stop (its first instance stops for the port).
async fn leave_proxy(
    sup: &Supervisor,
    d: &Deployment,
    release: &crate::store::ReleaseRecord,
    events: &Events,
) {
    let listen = sup.app_host().public_address(release.spec.port);
    match sup.proxy().remove_route(listen).await {
        Ok(()) => events.info(
            events::START,
            format!("the node proxy let go of {listen} (strategy recreate: the app binds it)"),
        ),
        Err(e) => e.log_removal(&release.spec.name),
    }
    for r in d.take_replicas() {
        r.stop().await;
    }
}

/// Behind a load balancer that checks the deployment (within the last minute), its health
/// endpoint answers 503 for `lb_drain` before the release that serves is stopped, so the
/// balancer sends no request into the outage (`strategy: recreate`). The deploy's end
/// lets it answer again.
async fn lb_drain(sup: &Supervisor, d: &Deployment, release: u32, events: &Events) {
    let wait = sup.config().lb_drain;
    if wait.is_zero() || !d.lb_watching(crate::supervisor::LB_WATCHING) {
        return;
    }
    d.begin_draining();
    events.info(
        events::START,
        format!(
            "draining release {release}: its health endpoint answers 503 for {} so load balancers stop sending to it",
            humantime::format_duration(wait)
        ),
    );
    tokio::time::sleep(wait).await;
}

/// Stops the previous release until its port is free; it finishes exiting (SIGKILL after
/// its kill timeout) in the background.
async fn stop_for_port(prev: &Instance, spec: &Spec, events: &Events) {
    let stopping = Instant::now();
    let (pid, how) = prev.stop_freeing_port().await;
    let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    let ms = stopping.elapsed().as_millis();
    events.info(
        events::START,
        match how {
            Stopped::Exiting => format!(
                "stopped release {} (pid {pid}): port {} free after {ms} ms, the app is still exiting",
                prev.release, spec.port
            ),
            how => format!(
                "stopped release {} (pid {pid}, {}) to free port {} in {ms} ms",
                prev.release,
                how.as_str(),
                spec.port
            ),
        },
    );
}

impl Started {
    /// The new release's private ports, its first instance's first.
    pub(super) fn ports(&self) -> Vec<u16> {
        self.private_port
            .into_iter()
            .chain(self.replicas.iter().map(|(_, _, p)| *p))
            .collect()
    }

    /// The new release did not make it (not healthy, or the switch failed): every instance
    /// of it stops, and it is no longer the deployment's; the previous release is again
    /// if it still serves (it was on another port).
    pub(super) async fn abandon(self, d: &Deployment, layout: &crate::store::Layout) {
        let stops: Vec<_> = std::iter::once(self.instance.clone())
            .chain(self.replicas.iter().map(|(r, _, _)| r.clone()))
            .map(|i| tokio::spawn(async move { i.stop().await }))
            .collect();
        for s in stops {
            let _ = s.await;
        }
        if self.handover.new_serves_at_start() {
            let stopped = self.handover.stops_previous();
            d.start_undone(self.previous.filter(|_| !stopped));
        }
        // Its processes are gone: the journal forgets them.
        d.start_abandoned(layout).await;
    }
}
