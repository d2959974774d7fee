//! `build_memory`: the memory limit of a release's build — the packages step and the start
//! script — apart from the app's own (builds need more: compiling wheels, downloading and
//! converting models). Each build gets cgroups of its own while it runs; a build the
//! kernel's OOM killer stopped says so, naming the limit.

use std::path::PathBuf;

use super::events::StepError;
use crate::spec::Spec;
use crate::supervisor::NodeServices;
use crate::tracking::{self, Tracking};

/// One build's cgroups, with their memory limit.
pub(super) struct BuildCgroup {
    tracking: Tracking,
    limit: u64,
}

impl BuildCgroup {
    /// The build's cgroups for `spec` (`None` without `build_memory`).
    pub(super) fn create(
        node: &NodeServices,
        spec: &Spec,
        step: &'static str,
    ) -> Result<Option<BuildCgroup>, StepError> {
        let Some(limit) = spec.resources.build_memory else {
            return Ok(None);
        };
        let limits = crate::limits::Limits {
            memory: Some(limit),
            ..Default::default()
        };
        let name = format!("{}.build", spec.name);
        let tracking = node
            .tracker()
            .new_instance(&name, 0, &limits)
            .map_err(|e| {
                StepError::new(
                    step,
                    format!("resources.build_memory: cannot limit the build here: {e}"),
                )
            })?;
        Ok(Some(BuildCgroup { tracking, limit }))
    }

    /// The cgroups a build's process joins.
    pub(super) fn dirs(&self) -> Vec<PathBuf> {
        self.tracking
            .cgroup
            .iter()
            .chain(&self.tracking.limits)
            .cloned()
            .collect()
    }

    /// After the build (`result` of step `step`): its cgroups go, and a failure the OOM
    /// killer caused says so, after `what` ("prepare.sh", "the package install").
    pub(super) async fn end<T>(
        build: Option<BuildCgroup>,
        result: Result<T, StepError>,
        step: &'static str,
        what: &str,
    ) -> Result<T, StepError> {
        let oom = match build {
            Some(b) => b.finish().await,
            None => None,
        };
        match (result, oom) {
            (Err(e), Some(why)) => {
                Err(StepError::new(step, format!("{what} {why}")).with_tail(e.tail))
            }
            (result, _) => result,
        }
    }

    /// Its cgroups go; why the build failed when the OOM killer stopped it.
    async fn finish(self) -> Option<String> {
        let BuildCgroup { tracking, limit } = self;
        tokio::task::spawn_blocking(move || {
            let oom = tracking.stats().oom_kills > 0;
            // What the build left running dies with it.
            tracking::signal(0, &tracking, nix::sys::signal::Signal::SIGKILL, false);
            tracking::release(&tracking);
            oom.then(|| {
                format!(
                    "was killed: out of memory at its {} build_memory limit (resources.build_memory)",
                    crate::capacity::bytes(limit)
                )
            })
        })
        .await
        .ok()
        .flatten()
    }
}
