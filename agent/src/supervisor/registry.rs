//! The registry: which deployments the node has, each one a [`Deployment`] (the only owner
//! of its state). Its lock guards lookups only; nothing is held across I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::deployment::Deployment;
use crate::store::Record;
use crate::tracking::Tracking;

#[derive(Default)]
pub(crate) struct Registry {
    deployments: Mutex<BTreeMap<String, Arc<Deployment>>>,
}

impl Registry {
    /// The deployments of the records the node-local store holds.
    pub(super) fn loaded(records: Vec<Record>) -> Self {
        let map = records
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(Deployment::loaded(r))))
            .collect();
        Registry {
            deployments: Mutex::new(map),
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Deployment>>> {
        self.deployments.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Deployment>> {
        self.map().get(name).cloned()
    }

    pub(crate) fn get_or_create(&self, name: &str) -> Arc<Deployment> {
        self.map()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Deployment::new(Record::new(name))))
            .clone()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Deployment>> {
        self.map().values().cloned().collect()
    }

    /// Takes `d` out of the registry (if it is still the entry of its name).
    pub(super) fn unregister(&self, d: &Arc<Deployment>) {
        let mut map = self.map();
        if map.get(d.name()).is_some_and(|m| Arc::ptr_eq(m, d)) {
            map.remove(d.name());
        }
    }

    /// Who owns a deployment, if it exists.
    pub(crate) fn owner_of(&self, name: &str) -> Option<String> {
        self.get(name)?.owner()
    }

    /// Which other deployment on this node uses `port`, if any: its name and owner.
    pub(crate) fn port_owner(&self, port: u16, except: &str) -> Option<(String, String)> {
        self.all().into_iter().find_map(|d| {
            if d.name() == except {
                return None;
            }
            d.current()
                .filter(|r| r.spec.port == port)
                .map(|r| (d.name().to_string(), r.spec.owner))
        })
    }

    /// Process group leaders of every running app (for telling ours from foreign ports).
    pub(crate) fn running_pids(&self) -> Vec<u32> {
        self.running_apps()
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Every running app: its first process (the group leader) and how the others are found.
    pub(crate) fn running_apps(&self) -> Vec<(u32, Tracking)> {
        self.all().iter().flat_map(|d| d.running_apps()).collect()
    }
}
