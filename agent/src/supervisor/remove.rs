//! Removing a deployment from the node: stop what runs, delete its directory and record,
//! forget it, and let its venvs be collected.

use std::time::Duration;

use super::Supervisor;
use crate::deployment::ToStop;
use crate::error::{Error, Result};
use crate::process::{self, AppProcess, Stopped};
use crate::procstat::ProcId;
use crate::tracking::Tracking;

impl Supervisor {
    /// Stops a deployment on this node and deletes its directories and record.
    pub(crate) async fn remove(&self, name: &str) -> Result<(Option<u32>, Stopped)> {
        let d = match self.get(name) {
            Some(d) => d,
            // A directory without a record (a failed first deploy of an older agent, an
            // unreadable record): removed like a deployment that runs nothing.
            None if tokio::fs::symlink_metadata(self.layout.deployment(name))
                .await
                .is_ok() =>
            {
                self.get_or_create(name)
            }
            None => return Err(Error::NotFound(name.to_string())),
        };
        let Some(_op) = d.begin().await else {
            return Err(Error::NotFound(name.to_string()));
        };
        // Behind the node proxy: its port is let go first, so no new request reaches it.
        if let (Some(release), Some(_)) = (d.current(), d.private_port()) {
            let listen = crate::launch::public_address(self, &release);
            let removed = match self.proxy().client().await {
                Ok(client) => client.remove_route(listen).await,
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                tracing::warn!(deployment = %name, error = %e, "cannot remove the deployment's route");
            }
        }
        let stopped = match d.stop_for_removal() {
            ToStop::Instance(i) => i.stop().await,
            ToStop::Recorded {
                id,
                tracking,
                grace,
            } => (Some(id.pid), stop_recorded(id, tracking, grace).await),
            ToStop::Nothing => (None, Stopped::NotRunning),
        };
        d.forget(&self.layout).await?;
        self.unregister(&d);
        // Its venvs may now be unused.
        self.collect_venv_garbage().await;
        Ok(stopped)
    }
}

/// Stops a recorded process that no instance supervises (one left by an earlier agent
/// run), with every process of its instance.
pub(crate) async fn stop_recorded(id: ProcId, tracking: Tracking, grace: Duration) -> Stopped {
    process::stop_group(&mut AppProcess::adopt(id, tracking), grace).await
}
