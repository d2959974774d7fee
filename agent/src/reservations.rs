//! Private ports handed to deploys in progress, so two deploys never pick the same one
//! before their apps bind it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::ports::free_port;

/// Private ports handed to deploys in progress, so two deploys never pick the same one
/// before their apps bind it.
#[derive(Default)]
pub(crate) struct Reservations {
    taken: Arc<Mutex<HashSet<u16>>>,
}

/// Ports reserved until dropped (by then the deploy's apps bind them, or it failed).
pub(crate) struct PortLease {
    taken: Arc<Mutex<HashSet<u16>>>,
    pub ports: Vec<u16>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        for p in &self.ports {
            taken.remove(p);
        }
    }
}

impl Reservations {
    /// `n` distinct free ports on `ip` that no deploy in progress holds and `in_use` does
    /// not name (the ports of running instances).
    pub(crate) fn reserve(
        &self,
        ip: IpAddr,
        n: usize,
        in_use: &HashSet<u16>,
    ) -> std::io::Result<PortLease> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let mut ports = Vec::with_capacity(n);
        let mut tries = 0;
        while ports.len() < n {
            tries += 1;
            if tries > 1000 {
                return Err(std::io::Error::other("no free port found in 1000 tries"));
            }
            let port = free_port(ip)?;
            if !ports.contains(&port) && !taken.contains(&port) && !in_use.contains(&port) {
                ports.push(port);
            }
        }
        taken.extend(ports.iter().copied());
        Ok(PortLease {
            taken: self.taken.clone(),
            ports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn deploys_in_progress_never_get_the_same_private_port() {
        let reservations = Reservations::default();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let running: HashSet<u16> = Default::default();
        let a = reservations.reserve(local, 3, &running).unwrap();
        let b = reservations.reserve(local, 3, &running).unwrap();
        assert_eq!(a.ports.len(), 3);
        assert!(
            a.ports.iter().all(|p| !b.ports.contains(p)),
            "{:?} {:?}",
            a.ports,
            b.ports
        );
        let held = a.ports.clone();
        drop(a);
        let taken = reservations.taken.lock().unwrap().clone();
        assert!(
            held.iter().all(|p| !taken.contains(p)),
            "released with its lease"
        );
        // Ports of running instances are never handed out.
        let in_use: HashSet<u16> = b.ports.iter().copied().collect();
        let c = reservations.reserve(local, 2, &in_use).unwrap();
        assert!(c.ports.iter().all(|p| !in_use.contains(p)));
    }
}
