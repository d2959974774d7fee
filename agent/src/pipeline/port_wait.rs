//! Before a new release starts on its port: the previous release of the same deployment
//! may still hold it for a moment after it was told to stop (a multi-threaded server whose
//! main thread has exited while other threads still hold the listening socket). Such a
//! socket is ours, not a foreign process's: wait for it, bounded by the kill timeout
//! (after which the stop SIGKILLs it).

use std::time::{Duration, Instant};

use super::events::{self, Events, StepError};
use crate::ports;
use crate::spec::Spec;
use crate::supervisor::NodeServices;
use crate::tracking::Tracking;

/// How often the port is looked at while an old release lets go of it.
const POLL: Duration = Duration::from_millis(20);
/// Beyond the kill timeout: the SIGKILL and the kernel closing the socket.
const AFTER_KILL: Duration = Duration::from_secs(3);

/// Waits until no process of this deployment's earlier instances listens on its port.
pub(super) async fn own_holders_gone(
    node: &NodeServices,
    spec: &Spec,
    grace: Duration,
    events: &Events,
) -> Result<(), StepError> {
    let began = Instant::now();
    let deadline = began + grace + AFTER_KILL;
    let mut last: Vec<u32> = Vec::new();
    loop {
        let held = own_holders(node, &spec.name, spec.port).await;
        if held.is_empty() {
            if !last.is_empty() {
                events.info(
                    events::START,
                    format!(
                        "the previous release's exiting process (pid {}) let go of port {} after {} ms",
                        join(&last),
                        spec.port,
                        began.elapsed().as_millis()
                    ),
                );
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StepError::new(
                events::START,
                format!(
                    "port {} is still held by pid {} of this deployment's previous release, which did not exit within {} of being stopped",
                    spec.port,
                    join(&held),
                    humantime::format_duration(grace + AFTER_KILL)
                ),
            ));
        }
        last = held;
        tokio::time::sleep(POLL).await;
    }
}

/// The pids of `name`'s instances listening where its app would.
async fn own_holders(node: &NodeServices, name: &str, port: u16) -> Vec<u32> {
    let (tracker, name) = (node.tracker().clone(), name.to_string());
    ports::holder_pids(node.config().app_host, port, move |pid| {
        tracker
            .owner_of(pid)
            .is_some_and(|id| Tracking::deployment(&id) == Some(name.as_str()))
    })
    .await
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
