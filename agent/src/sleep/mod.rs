//! Sleep and wake: a deployment with `idle_timeout` that gets no request through the node
//! proxy for that long ([`idle`]: the proxy's counts, read every second; the agent's own
//! health checks go to the instances directly, load balancers ask the agent, so neither
//! counts) is put to sleep: its route stays, with no backend and its wake timeout; the
//! requests in flight finish; its processes are stopped; its GPUs go back to the node and
//! its memory limit stops counting against the node's room. The next request makes the
//! proxy ask the agent to wake it ([`socket`]), and waits: the current release is started
//! as `deployctl start` starts it and checked, then the route has its backends again and
//! every held request goes on. A wake that fails is answered 503 with `Retry-After` for
//! [`WAKE_RETRY`], and said in `status`.

pub(crate) mod idle;
pub(crate) mod socket;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deployment::Deployment;
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// How long a failed wake is answered 503 before a request tries again.
pub(crate) const WAKE_RETRY: Duration = Duration::from_secs(10);

impl Supervisor {
    /// The node proxy's route for `d` while it sleeps: its port, no backend, its wake
    /// timeout.
    pub(crate) fn sleeping_route(
        &self,
        d: &Deployment,
        release: &ReleaseRecord,
    ) -> crate::proxy::RouteSpec {
        let mut route = self.route(d, release, &[]);
        route.sleeping = Some(crate::proxy::Sleeping {
            wake_timeout_ms: release.spec.wake_timeout.as_millis() as u64,
        });
        route
    }

    /// Puts `d` to sleep (`why`: its last event) unless something changed since it was
    /// found idle: a deploy or removal in progress (its lock is taken), stopped, asleep, or
    /// a request came (`still_idle` says, under the lock). Its route sleeps first (a request
    /// from now on is held and wakes it again after this), the requests in flight finish
    /// (up to `drain_timeout`), then its processes stop.
    pub(crate) async fn put_to_sleep(
        &self,
        d: &Arc<Deployment>,
        why: String,
        still_idle: impl std::future::Future<Output = bool>,
    ) -> bool {
        let Some(_op) = d.begin().await else {
            return false;
        };
        let Some(release) = d.current() else {
            return false;
        };
        if d.is_sleeping() || d.is_stopped() || d.private_port().is_none() || !still_idle.await {
            return false;
        }
        let listen = self.app_host().public_address(release.spec.port);
        if let Err(e) = self
            .proxy()
            .switch_route(self.sleeping_route(d, &release))
            .await
        {
            tracing::warn!(deployment = %d.name(), error = %e, "cannot put the deployment to sleep: the node proxy did not take its sleeping route");
            return false;
        }
        let began = Instant::now();
        let deadline = began + release.spec.drain_timeout;
        while self.proxy().in_flight(listen, None).await > 0 && Instant::now() < deadline {
            tokio::time::sleep(crate::supervisor::DRAIN_POLL).await;
        }
        let (pid, how) = crate::supervisor::stop_all(d.stop_for_removal()).await;
        self.free_gpus(d);
        d.fell_asleep(self.layout(), why).await;
        self.metrics().fell_asleep(d.name());
        tracing::info!(deployment = %d.name(), ?pid, how = how.as_str(), drained_ms = began.elapsed().as_millis() as u64, "sleeping");
        true
    }

    /// Wakes `name` for a request the node proxy holds on `listen`: `Ok` once it serves
    /// (at once when it does not sleep), else why not and how long to wait before asking
    /// again.
    pub(crate) async fn wake(
        self: &Arc<Self>,
        name: &str,
        listen: std::net::SocketAddr,
    ) -> Result<(), (String, Duration)> {
        let d = self
            .registry()
            .get(name)
            .ok_or_else(|| (format!("no deployment {name} on this node"), WAKE_RETRY))?;
        let serves = d
            .current()
            .is_some_and(|r| self.app_host().public_address(r.spec.port) == listen);
        if !serves {
            return Err((
                format!("{name} does not serve {listen} on this node"),
                WAKE_RETRY,
            ));
        }
        if let Some(failed) = d.wake_failure_within(WAKE_RETRY) {
            return Err(failed);
        }
        match crate::pipeline::relaunch::wake(self, &d).await {
            Ok(None) => Ok(()),
            Ok(Some(took)) => {
                self.metrics().woke(d.name(), took);
                tracing::info!(deployment = %name, took_ms = took.as_millis() as u64, "woke up");
                Ok(())
            }
            Err(why) => Err((why, WAKE_RETRY)),
        }
    }
}
