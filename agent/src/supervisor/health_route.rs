//! Instances in and out of traffic: when an instance of a deployment's live release turns
//! unhealthy (or healthy again), the node proxy's route for the deployment is set to the
//! instances that are in traffic (none: requests wait up to `hold_timeout`, as during a
//! restart). One change at a time, each computed from what is true when it is made, and
//! only while the route still serves those instances (a deploy's switch wins).

use std::net::SocketAddr;
use std::sync::Arc;

use super::Supervisor;
use crate::spec::Strategy;

/// Deployments whose instances went in or out of traffic, for [`follow_health`].
pub(crate) type HealthChanges = super::queue::Queue<String>;

/// Sets each deployment's route as its instances' health goes, for as long as the agent runs.
pub(crate) async fn follow_health(sup: Arc<Supervisor>) {
    let Some(mut rx) = sup.health_changes.take() else {
        return;
    };
    while let Some(name) = rx.recv().await {
        route_in_traffic(&sup, &name).await;
    }
}

/// Which of `ports` serve: those whose instance is not out of traffic (`out`, same order).
pub(crate) fn in_traffic(ports: &[u16], out: &[bool]) -> Vec<u16> {
    ports
        .iter()
        .zip(out)
        .filter(|(_, out)| !**out)
        .map(|(p, _)| *p)
        .collect()
}

/// Routes `name`'s public port to the instances of its live release that are in traffic.
async fn route_in_traffic(sup: &Supervisor, name: &str) {
    let Some(d) = sup.registry().get(name) else {
        return;
    };
    let Some(release) = d.current() else {
        return;
    };
    let ports = d.private_ports();
    if release.spec.strategy != Strategy::Switch || ports.is_empty() {
        return;
    }
    let instances: Vec<_> = d.instance().into_iter().chain(d.replicas()).collect();
    if instances.len() != ports.len() || instances.iter().any(|i| i.release != release.number) {
        // A change of what runs is in flight: its own route decides.
        return;
    }
    let out: Vec<bool> = instances
        .iter()
        .map(|i| i.snapshot().out_of_traffic)
        .collect();
    let serving = in_traffic(&ports, &out);
    let within: Vec<SocketAddr> = ports
        .iter()
        .map(|p| sup.app_host().private_address(*p))
        .collect();
    let route = sup.route(&d, &release, &serving);
    match sup.proxy().set_route_within(route, &within).await {
        Ok(true) => tracing::info!(
            deployment = %name,
            serving = serving.len(),
            instances = ports.len(),
            "node proxy route follows the instances' health"
        ),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(deployment = %name, error = %e, "cannot change the node proxy's route")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn instances_out_of_traffic_are_left_out() {
        assert_eq!(
            super::in_traffic(&[41000, 41001, 41002], &[false, true, false]),
            [41000, 41002]
        );
        assert!(super::in_traffic(&[41000], &[true]).is_empty());
    }
}
