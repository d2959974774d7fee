//! Draining a deployment for load balancers: while it is removed (or recreated) its health
//! endpoint answers 503 while it still serves, when a load balancer watches it.

use std::time::Duration;

use super::Deployment;

impl Deployment {
    /// Removal begins: load balancers are told to stop sending it requests.
    pub(crate) fn begin_draining(&self) {
        self.state().draining = true;
    }

    /// Load balancers may send it requests again (a recreated release is healthy).
    pub(crate) fn end_draining(&self) {
        self.state().draining = false;
    }

    /// A load balancer asked for its health endpoint.
    pub(crate) fn lb_checked(&self) {
        self.state().lb_checked = Some(std::time::Instant::now());
    }

    /// Whether a load balancer checked it within `within`: only then is there anyone to
    /// drain for.
    pub(crate) fn lb_watching(&self, within: Duration) -> bool {
        self.state()
            .lb_checked
            .is_some_and(|t| t.elapsed() <= within)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.state().draining
    }
}
