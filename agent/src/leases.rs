//! Leases: what a deploy in progress uses (a venv, an artifact) is held by key until the
//! deploy is over, so a collection running meanwhile leaves it alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many leases each key has.
#[derive(Default, Clone)]
pub(crate) struct Leases {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Leases {
    fn map(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `key` until the returned lease is dropped.
    pub(crate) fn lease(&self, key: &str) -> Lease {
        *self.map().entry(key.to_string()).or_insert(0) += 1;
        Lease {
            leases: self.clone(),
            key: key.to_string(),
        }
    }

    /// The keys held now.
    pub(crate) fn held(&self) -> HashMap<String, usize> {
        self.map().clone()
    }
}

/// One use of a key; released on drop.
pub(crate) struct Lease {
    leases: Leases,
    key: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut map = self.leases.map();
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}
