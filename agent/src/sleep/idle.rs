//! Finding idle deployments: every second the node proxy's counts of each deployment with
//! an `idle_timeout` are compared with the last ones; a deployment whose counts did not
//! move and that has nothing in flight for its whole idle timeout is put to sleep. Only
//! requests through the proxy count: the agent's health checks and warm-ups go to the
//! instances directly, load balancers and Prometheus ask the agent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::deployment::Deployment;
use crate::proxy::RouteStats;
use crate::supervisor::Supervisor;

/// How often the proxy's counts are read.
const EVERY: Duration = Duration::from_secs(1);

/// What was last seen of one deployment's route.
struct Seen {
    /// Requests, connections and held requests the route counted, all together.
    activity: u64,
    /// When they last moved (or something was in flight).
    active: Instant,
    /// A sleep is being done.
    sleeping: Arc<AtomicBool>,
}

/// Watches the deployments with an idle timeout until the agent stops.
pub(crate) async fn watch(sup: Arc<Supervisor>) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashMap<String, Seen> = HashMap::new();
    loop {
        every.tick().await;
        let watched = watched(&sup);
        seen.retain(|name, _| watched.iter().any(|(d, _, _)| d.name() == name));
        if watched.is_empty() {
            continue;
        }
        let Some(routes) = sup.proxy().stats_if_running().await else {
            continue;
        };
        let now = Instant::now();
        for (d, listen, Idle { after: idle, field }) in watched {
            let Some((counted, in_flight)) = activity(&routes, listen) else {
                continue;
            };
            let e = seen.entry(d.name().to_string()).or_insert_with(|| Seen {
                activity: counted,
                active: now,
                sleeping: Default::default(),
            });
            // A deploy of a sleeping deployment went live: it sleeps again at once (unless
            // a request came meanwhile).
            if d.take_sleep_soon() {
                e.active = now.checked_sub(idle).unwrap_or(e.active);
            }
            if counted != e.activity || in_flight > 0 {
                e.activity = counted;
                e.active = now;
            }
            let idle_for = now.saturating_duration_since(e.active);
            if idle_for < idle || e.sleeping.swap(true, Ordering::AcqRel) {
                continue;
            }
            let (sup, busy, seen_activity) = (sup.clone(), e.sleeping.clone(), e.activity);
            tokio::spawn(async move {
                let why = format!(
                    "sleeping: no request for {} ({field}); the next request wakes it",
                    humantime::format_duration(Duration::from_secs(idle_for.as_secs()))
                );
                let still_idle = {
                    let sup = sup.clone();
                    async move {
                        let routes = sup.proxy().stats_if_running().await.unwrap_or_default();
                        activity(&routes, listen) == Some((seen_activity, 0))
                    }
                };
                sup.put_to_sleep(&d, why, still_idle).await;
                busy.store(false, Ordering::Release);
            });
        }
    }
}

/// The deployments that may fall asleep now: an idle timeout (or replicas that scale to
/// zero: `min: 0`, after `scale_down_after` without a request), a release that serves
/// behind the node proxy, not asleep or stopped; with their public address and what
/// their timeout is called.
fn watched(sup: &Supervisor) -> Vec<(Arc<Deployment>, SocketAddr, Idle)> {
    sup.registry()
        .all()
        .into_iter()
        .filter(|d| !d.is_sleeping() && !d.is_stopped() && d.private_port().is_some())
        .filter_map(|d| {
            let release = d.current()?;
            let idle = idle_timeout(&release.spec)?;
            let listen = sup.app_host().public_address(release.spec.port);
            Some((d, listen, idle))
        })
        .collect()
}

/// How long a deployment may go without a request, and the field that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Idle {
    pub after: Duration,
    pub field: &'static str,
}

/// `idle_timeout`, else `replicas.scale_down_after` of replicas that scale to zero.
pub(crate) fn idle_timeout(spec: &crate::spec::Spec) -> Option<Idle> {
    match (spec.idle_timeout, &spec.autoscale) {
        (Some(after), _) => Some(Idle {
            after,
            field: "idle_timeout",
        }),
        (None, Some(a)) if a.wants_zero() => Some(Idle {
            after: a.scale_down_after,
            field: "replicas.min 0, after replicas.scale_down_after",
        }),
        _ => None,
    }
}

/// Everything the route on `listen` counted, and what it has in flight.
fn activity(routes: &[RouteStats], listen: SocketAddr) -> Option<(u64, u64)> {
    let r = routes.iter().find(|r| r.listen == listen)?;
    let counted = r.totals.requests() + r.totals.connections + r.unavailable;
    let in_flight = r
        .serving
        .iter()
        .chain(&r.draining)
        .map(|b| b.in_flight)
        .sum();
    Some((counted, in_flight))
}
