//! A scaling carried out, under the deployment's op lock (taken only when free): up, new
//! instances of the current release on new private ports, each health-checked (and warmed
//! up) before it joins the node proxy's route; down, the last replica out of the route,
//! drained (up to `drain_timeout`), stopped. Each change is a transition of the deployment,
//! persisted, an event in its record and a count in `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::room;
use crate::deployment::Deployment;
use crate::instance::Instance;
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// How often a leaving replica's requests in flight are looked at.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Scales `d` (running release `release`) from `from` to `to` replicas, saying `why`.
pub(super) async fn scale(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    release: u32,
    from: u32,
    to: u32,
    why: String,
) {
    let Some(_op) = d.try_begin() else {
        return;
    };
    // A deploy, restart or scaling since the decision: it is not this one's to make.
    let Some(current) = d.current().filter(|r| r.number == release) else {
        return;
    };
    if d.running_count() != from || d.is_stopped() {
        return;
    }
    if to > from {
        up(sup, d, &current, from, to, why).await;
    } else if to < from {
        down(sup, d, &current, from, why).await;
    }
}

/// Adds replicas up to `to` (as many as the node has room for), each started, checked and
/// warmed before it takes requests; one that does not become healthy is stopped.
async fn up(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
    from: u32,
    to: u32,
    why: String,
) {
    let spec = &release.spec;
    let (fit, short) = room::fits(sup, spec, to - from);
    if fit < to - from {
        let reason = short.unwrap_or_default();
        let text = format!(
            "wanted {to} replicas, the node has room for {}: {reason}",
            from + fit
        );
        if d.blocked(Some(reason)) {
            tracing::warn!(deployment = %d.name(), "{text}");
            d.scaled(sup.layout(), from, from, text).await;
            sup.metrics().scaled(d.name(), "blocked");
        }
        if fit == 0 {
            return;
        }
    } else {
        d.blocked(None);
    }
    let lease = match crate::pipeline::private_ports(sup, fit as usize) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(deployment = %d.name(), error = %e.reason, "no private port for a new replica");
            return;
        }
    };
    let began = Instant::now();
    let mut starting = Vec::new();
    for (i, port) in lease.ports.iter().enumerate() {
        let index = from as usize + i;
        let cfg = crate::launch::instance_config(sup, d, release, Some(*port), index).await;
        let (instance, ready) = Instance::start(cfg);
        starting.push((Arc::new(instance), ready, *port));
    }
    let mut added = 0;
    let mut failed = Vec::new();
    for (i, (instance, ready, port)) in starting.into_iter().enumerate() {
        match ready_and_warm(sup, release, ready, port).await {
            Ok(()) if failed.is_empty() => {
                if d.replica_added(sup.layout(), release.number, instance.clone(), port)
                    .await
                {
                    added += 1;
                    continue;
                }
                failed.push(format!(
                    "release {} is no longer the current one",
                    release.number
                ));
            }
            Ok(()) => {}
            Err(e) => failed.push(e),
        }
        // Failed, or after one that failed (replicas join in order): it stops.
        instance.stop().await;
        let index = from as usize + i;
        sup.gpu_pool()
            .release(&crate::gpus::holder(d.name(), index as u32));
        sup.save_gpus();
    }
    drop(lease);
    // The journal's processes in flight were these (added ones left it as they joined).
    d.start_abandoned(sup.layout()).await;
    if added > 0 {
        route(sup, d, release, &[]).await;
        let (wanted, to) = (to, from + added);
        let text = match from + added {
            n if n == wanted => why,
            n => why.replacen(&format!("→ {wanted}"), &format!("→ {n}"), 1),
        };
        tracing::info!(deployment = %d.name(), took_ms = began.elapsed().as_millis() as u64, "{text}");
        d.scaled(sup.layout(), from, to, text).await;
        sup.metrics().scaled(d.name(), "up");
    }
    if let Some(e) = failed.first() {
        let text = format!("a new replica did not start: {e}");
        tracing::warn!(deployment = %d.name(), "{text}");
        d.scaled(sup.layout(), from + added, from + added, text)
            .await;
        sup.metrics().scaled(d.name(), "failed");
    }
}

/// Waits for a new instance to be healthy (up to `health.startup_timeout` and its kill
/// timeout), then sends it the declaration's warm-ups.
async fn ready_and_warm(
    sup: &Supervisor,
    release: &ReleaseRecord,
    ready: tokio::sync::oneshot::Receiver<Result<u32, crate::instance::StartFailure>>,
    port: u16,
) -> Result<(), String> {
    let spec = &release.spec;
    let limit = spec.health.timeout + spec.kill_timeout;
    match tokio::time::timeout(limit, ready).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(f))) => return Err(f.reason),
        Ok(Err(_)) => return Err("the app's supervisor ended unexpectedly".into()),
        Err(_) => {
            return Err(format!(
                "not healthy within {} (health.startup_timeout)",
                humantime::format_duration(spec.health.timeout)
            ))
        }
    }
    crate::pipeline::warm_one(spec, sup.app_host().private_address(port)).await
}

/// Removes the last replica: out of the route, its requests finished (up to
/// `drain_timeout`), stopped, its GPUs free.
async fn down(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
    from: u32,
    why: String,
) {
    let Some(leaving) = d.replica_leaving(sup.layout()).await else {
        return;
    };
    let addr = sup.app_host().private_address(leaving.port);
    route(sup, d, release, &[addr]).await;
    let listen = sup.app_host().public_address(release.spec.port);
    let deadline = Instant::now() + release.spec.drain_timeout;
    while sup.proxy().in_flight(listen, Some(addr)).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    leaving.instance.stop().await;
    {
        let mut pool = sup.gpu_pool();
        pool.release(&crate::gpus::holder(d.name(), leaving.index as u32));
    }
    sup.save_gpus();
    d.retired(sup.layout()).await;
    tracing::info!(deployment = %d.name(), "{why}");
    d.scaled(sup.layout(), from, from - 1, why).await;
    sup.metrics().scaled(d.name(), "down");
}

/// Routes `d`'s public port to its instances in traffic now; `leaving`: addresses the
/// route had that are no longer the deployment's (a replica that leaves).
async fn route(sup: &Supervisor, d: &Deployment, release: &ReleaseRecord, leaving: &[SocketAddr]) {
    let ports = d.private_ports();
    let out: Vec<bool> = d
        .instance()
        .into_iter()
        .chain(d.replicas())
        .map(|i| i.snapshot().out_of_traffic)
        .collect();
    let serving = crate::supervisor::in_traffic(&ports, &out);
    let within: Vec<SocketAddr> = ports
        .iter()
        .map(|p| sup.app_host().private_address(*p))
        .chain(leaving.iter().copied())
        .collect();
    let route = sup.route(d, release, &serving);
    if let Err(e) = sup.proxy().set_route_within(route, &within).await {
        tracing::warn!(deployment = %d.name(), error = %e, "cannot change the node proxy's route");
    }
}
