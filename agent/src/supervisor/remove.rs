//! Removing a deployment from the node: drain it (its load-balancer health endpoint
//! answers 503 for `lb_drain` while it still serves, then the node proxy's requests in
//! flight finish), stop what runs, delete its directory and record, forget it, and let its
//! venvs be collected.

use std::time::{Duration, Instant};

use super::kept::{self, DataLeft};
use super::Supervisor;
use crate::deployment::ToStop;
use crate::error::{Error, Result};
use crate::process::{self, AppProcess, Stopped};
use crate::procstat::ProcId;
use crate::tracking::Tracking;

/// How a removal went.
pub(crate) struct Removed {
    pub pid: Option<u32>,
    pub how: Stopped,
    /// How long the health endpoint answered 503 before the stop.
    pub lb_drained: Duration,
    /// How long the requests in flight then took to finish.
    pub requests_drained: Duration,
    /// A removal's `DATA_DIR`: kept or deleted.
    pub data: Option<DataLeft>,
}

/// A deployment whose health endpoint a load balancer asked for this recently is drained.
pub(crate) const LB_WATCHING: Duration = Duration::from_secs(60);

/// How often the proxy is asked whether requests are still in flight.
pub(crate) const DRAIN_POLL: Duration = Duration::from_millis(20);

impl Supervisor {
    /// Drains and stops a deployment on this node and deletes its directories and record;
    /// its `DATA_DIR` too unless `keep_data`. `lb_drain`: how long load balancers are given
    /// (default: the agent's `lb_drain`).
    pub(crate) async fn remove(
        &self,
        name: &str,
        lb_drain: Option<Duration>,
        keep_data: bool,
    ) -> Result<Removed> {
        let d = match self.registry().get(name) {
            Some(d) => d,
            // A directory without a record (a failed first deploy of an older agent, an
            // unreadable record): removed like a deployment that runs nothing.
            None if tokio::fs::symlink_metadata(self.layout.deployment(name))
                .await
                .is_ok() =>
            {
                self.registry().get_or_create(name)
            }
            None => return Err(Error::NotFound(name.to_string())),
        };
        let Some(_op) = d.begin().await else {
            return Err(Error::NotFound(name.to_string()));
        };
        let owner = self.owner_of(name);
        let mut removed = self.drain_and_stop(&d, lb_drain).await;
        let bytes = self.data_size(name).await;
        // Data of nobody's (a leftover of an older agent) is not kept for anyone.
        let keep = keep_data && owner.is_some();
        d.forget(&self.layout, kept::survivors(keep)).await?;
        match owner.as_deref().filter(|_| keep) {
            Some(o) => self.keep_data(name, o).await.map_err(Error::Internal)?,
            None => self.data_deleted(name),
        }
        removed.data = Some(DataLeft {
            kept: keep,
            bytes,
            dir: self.layout.data(name),
        });
        self.unregister(&d);
        self.free_identity(&d).await;
        self.free_gpus(&d);
        // Its venvs and artifacts may now be unused.
        self.collect_garbage().await;
        Ok(removed)
    }

    /// Stops a deployment's app the way a removal does (drained first) and keeps the
    /// rest: its release, environment and record, marked stopped so that an agent restart
    /// does not start it again.
    pub(crate) async fn stop(&self, name: &str, lb_drain: Option<Duration>) -> Result<Removed> {
        let d = self
            .registry()
            .get(name)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let Some(_op) = d.begin().await else {
            return Err(Error::NotFound(name.to_string()));
        };
        if d.current().is_none() {
            return Err(Error::Conflict(format!(
                "{name} has no release on this node: nothing to stop"
            )));
        }
        let stopped = self.drain_and_stop(&d, lb_drain).await;
        d.stopped_by_user(&self.layout).await?;
        tracing::info!(deployment = %name, how = stopped.how.as_str(), "stopped");
        Ok(stopped)
    }

    /// Drains `d` (load balancers, then the node proxy's requests in flight, then its
    /// route goes) and stops every process it runs. Under the deployment's lock.
    async fn drain_and_stop(
        &self,
        d: &crate::deployment::Deployment,
        lb_drain: Option<Duration>,
    ) -> Removed {
        let name = d.name();
        // Load balancers see it unhealthy while it still serves, and stop sending to it.
        // (Only when a load balancer checks it, unless the caller asked for a drain.)
        let mut lb_drained = Duration::ZERO;
        let serves = d.running_app().is_some();
        let watched = lb_drain.is_some() || d.lb_watching(LB_WATCHING);
        let lb_drain = lb_drain.unwrap_or(self.config.lb_drain);
        if serves && watched && !lb_drain.is_zero() {
            d.begin_draining();
            tracing::info!(deployment = %name, wait = ?lb_drain, "draining: the health endpoint answers 503");
            tokio::time::sleep(lb_drain).await;
            lb_drained = lb_drain;
        }
        // Behind the node proxy: the requests it still has finish (up to drain_timeout),
        // then its port is let go, so no new request reaches an app that stops.
        let began = Instant::now();
        // A sleeping deployment has no instance, but its port is still the proxy's.
        let routed = d.private_port().is_some() || d.is_sleeping();
        if let (Some(release), true) = (d.current(), routed) {
            let listen = self.app_host().public_address(release.spec.port);
            let deadline = began + release.spec.drain_timeout;
            while self.proxy().in_flight(listen, None).await > 0 && Instant::now() < deadline {
                tokio::time::sleep(DRAIN_POLL).await;
            }
            if let Err(e) = self.proxy().remove_route(listen).await {
                e.log_removal(name);
            }
        }
        let requests_drained = began.elapsed();
        let (pid, how) = stop_all(d.stop_for_removal()).await;
        d.end_draining();
        Removed {
            pid,
            how,
            lb_drained,
            requests_drained,
            data: None,
        }
    }
}

/// Stops every instance of `list` at once; the first one's end is the answer.
pub(crate) async fn stop_all(list: Vec<ToStop>) -> (Option<u32>, Stopped) {
    let mut stops = list.into_iter().map(|s| tokio::spawn(stop(s)));
    let first = stops.next();
    let rest: Vec<_> = stops.collect();
    let stopped = match first {
        Some(t) => t.await.unwrap_or((None, Stopped::NotRunning)),
        None => (None, Stopped::NotRunning),
    };
    for t in rest {
        let _ = t.await;
    }
    stopped
}

async fn stop(what: ToStop) -> (Option<u32>, Stopped) {
    match what {
        ToStop::Instance(i) => i.stop().await,
        ToStop::Recorded {
            id,
            tracking,
            grace,
        } => (Some(id.pid), stop_recorded(id, tracking, grace).await),
        ToStop::Nothing => (None, Stopped::NotRunning),
    }
}

/// Stops a recorded process that no instance supervises (one left by an earlier agent
/// run), with every process of its instance.
pub(crate) async fn stop_recorded(id: ProcId, tracking: Tracking, grace: Duration) -> Stopped {
    process::stop_group(&mut AppProcess::adopt(id, tracking), grace).await
}
