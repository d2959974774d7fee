//! How a new release takes over from the one that runs now: decided once, before it
//! starts, from where each of them listens. The start step, the undo of a release that did
//! not make it, and the commit all follow from it.

/// How the new release relates to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handover {
    /// Behind the node proxy on a private port of its own. `previous_serves`: a previous
    /// release runs and keeps serving beside it until traffic switches (else the new one
    /// is the deployment's from its start).
    Beside { previous_serves: bool },
    /// On the deployment's port itself (`strategy: recreate`), which no previous release
    /// holds: the deployment's from its start.
    Direct,
    /// The previous release holds the port the new one needs (`strategy: recreate`, or a
    /// deployment moving onto the node proxy): it is drained and stopped first, and the new
    /// one takes its place (an outage as long as the new one's start).
    Replace,
    /// The deployment leaves the node proxy (`strategy: recreate` after `switch`): the proxy
    /// lets go of the port and every instance of the previous release stops first.
    LeaveProxy,
}

/// Where the releases listen, as the choice needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ports {
    /// The new release runs behind the node proxy (it has a private port).
    pub new_beside: bool,
    /// The deployment's port the new release serves.
    pub new_port: u16,
    /// The previous release's private port behind the node proxy, if it had one.
    pub previous_private: Option<u16>,
    /// The deployment's port the current release served, if there is one.
    pub current_port: Option<u16>,
    /// An instance of the previous release runs (it is not stopped).
    pub previous_runs: bool,
}

impl Handover {
    pub(super) fn choose(p: Ports) -> Handover {
        if !p.new_beside && p.previous_private.is_some() {
            Handover::LeaveProxy
        } else if p.previous_private.is_none() && p.current_port == Some(p.new_port) {
            Handover::Replace
        } else if p.new_beside {
            Handover::Beside {
                previous_serves: p.previous_runs,
            }
        } else {
            Handover::Direct
        }
    }

    /// The previous release stops before the new one starts.
    pub(super) fn stops_previous(self) -> bool {
        matches!(self, Handover::Replace | Handover::LeaveProxy)
    }

    /// The new release is the deployment's instance from its start (else once traffic
    /// switches to it).
    pub(super) fn new_serves_at_start(self) -> bool {
        !matches!(
            self,
            Handover::Beside {
                previous_serves: true
            }
        )
    }

    /// The new release binds the deployment's port itself, or takes it from the previous
    /// one: the port must first be free of this deployment's exiting processes.
    pub(super) fn needs_the_port(self) -> bool {
        !matches!(self, Handover::Beside { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(new_beside: bool, previous_private: Option<u16>, current_port: Option<u16>) -> Ports {
        Ports {
            new_beside,
            new_port: 8000,
            previous_private,
            current_port,
            previous_runs: current_port.is_some(),
        }
    }

    #[test]
    fn the_handover_follows_from_where_each_release_listens() {
        // First deploy behind the proxy, and a redeploy beside the running release.
        let first = Handover::choose(ports(true, None, None));
        assert_eq!(
            first,
            Handover::Beside {
                previous_serves: false
            }
        );
        assert!(first.new_serves_at_start() && !first.stops_previous() && !first.needs_the_port());
        let redeploy = Handover::choose(ports(true, Some(41000), Some(8000)));
        assert_eq!(
            redeploy,
            Handover::Beside {
                previous_serves: true
            }
        );
        assert!(!redeploy.new_serves_at_start() && !redeploy.stops_previous());
        // A stopped deployment behind the proxy: nothing serves beside the new release.
        let mut stopped = ports(true, Some(41000), Some(8000));
        stopped.previous_runs = false;
        assert!(Handover::choose(stopped).new_serves_at_start());
        // strategy recreate on the same port, and moving onto the proxy from it.
        for beside in [false, true] {
            let h = Handover::choose(ports(beside, None, Some(8000)));
            assert_eq!(h, Handover::Replace);
            assert!(h.stops_previous() && h.new_serves_at_start() && h.needs_the_port());
        }
        // strategy recreate on another port, or a first deploy: nothing to stop.
        for current in [None, Some(8001)] {
            let h = Handover::choose(ports(false, None, current));
            assert_eq!(h, Handover::Direct);
            assert!(!h.stops_previous() && h.new_serves_at_start() && h.needs_the_port());
        }
        // Leaving the proxy.
        let h = Handover::choose(ports(false, Some(41000), Some(8000)));
        assert_eq!(h, Handover::LeaveProxy);
        assert!(h.stops_previous() && h.new_serves_at_start() && h.needs_the_port());
    }
}
