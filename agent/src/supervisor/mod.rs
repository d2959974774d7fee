//! The supervisor: the node's services ([`NodeServices`]: configuration, data layout, users
//! and secrets, process tracking, venvs, the proxy, metrics) beside the registry of the
//! node's deployments ([`Registry`]), and what needs both (an instance's observer, removing
//! a deployment, identities, garbage collection). It reads as its services: `sup.layout()`.

mod garbage;
mod health_route;
mod identity;
pub(crate) mod kept;
mod observer;
mod queue;
mod registry;
mod remove;
mod services;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub(crate) use health_route::{follow_health, in_traffic};
pub(crate) use identity::move_off_taken_ports;
pub(crate) use registry::Registry;
pub(crate) use remove::{stop_all, stop_recorded, Removed, DRAIN_POLL, LB_WATCHING};
pub(crate) use services::NodeServices;
pub(crate) use view::View;

use crate::config::Config;
use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::instance::Observer;
use crate::secrets::Redactor;
use crate::store::{self, Layout};

pub(crate) struct Supervisor {
    node: NodeServices,
    registry: Registry,
    /// Data directories kept after `remove --keep-data`: name → owner.
    kept: Mutex<BTreeMap<String, String>>,
    /// Deployments whose instances went in or out of traffic: their routes follow.
    health_changes: health_route::HealthChanges,
}

/// The supervisor reads as the node's services (`sup.layout()`, `sup.proxy()`); the
/// deployments are behind [`Supervisor::registry`].
impl std::ops::Deref for Supervisor {
    type Target = NodeServices;
    fn deref(&self) -> &NodeServices {
        &self.node
    }
}

impl Supervisor {
    /// Loads the node-local store. [`Supervisor::recover`] then takes the apps over.
    pub(crate) async fn new(config: Config) -> Result<Arc<Self>> {
        let layout = Layout::new(config.data_dir.clone());
        let (l, auth_path) = (layout.clone(), config.auth_path());
        tokio::task::spawn_blocking(move || prepare_data_dir(&l, &auth_path))
            .await
            .map_err(|e| Error::Internal(format!("preparing the data directory: {e}")))??;
        let records = store::load_all(&layout).await;
        let recorded = records
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.releases.iter().map(|x| x.number).collect(),
                )
            })
            .collect();
        let l = layout.clone();
        // Before the agent serves: no deploy is filling a release directory yet.
        tokio::task::spawn_blocking(move || {
            crate::recover::remove_unrecorded_releases(&l, &recorded)
        })
        .await
        .map_err(|e| Error::Internal(format!("tidying release directories: {e}")))?;
        let l = layout.clone();
        let kept = tokio::task::spawn_blocking(move || kept::load(&l))
            .await
            .map_err(|e| Error::Internal(format!("finding kept data directories: {e}")))?;
        Ok(Arc::new(Supervisor {
            node: NodeServices::open(config, layout).await?,
            registry: Registry::loaded(records),
            kept: Mutex::new(kept),
            health_changes: Default::default(),
        }))
    }

    /// The node's services alone, for what must not reach the registry.
    pub(crate) fn node(&self) -> &NodeServices {
        &self.node
    }

    /// The node's deployments.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Takes `d` out of the registry and its metrics.
    fn unregister(&self, d: &Arc<Deployment>) {
        self.registry.unregister(d);
        self.node.metrics.forget(d.name());
    }

    /// Who owns `name` here: its deployment's owner, else the owner of its kept data.
    pub(crate) fn owner_of(&self, name: &str) -> Option<String> {
        match self.registry.get(name) {
            Some(d) => d.owner().or_else(|| self.kept_owner(name)),
            None => self.kept_owner(name),
        }
    }

    /// Hides the secret values of a deployment (its current release's) in output.
    pub(crate) async fn redactor(&self, name: &str) -> Redactor {
        match self.registry.get(name).and_then(|d| d.current()) {
            Some(r) => self.secrets.redactor(&r.spec).await.0,
            None => Redactor::new(vec![]),
        }
    }

    /// The last `lines` lines of a deployment's app log (or deploy log), then what is
    /// appended when `follow`; its secrets redacted.
    pub(crate) async fn logs(
        &self,
        name: &str,
        deploy: bool,
        how: crate::logs::Reading,
    ) -> Result<impl tokio_stream::Stream<Item = Vec<u8>> + Send + 'static> {
        // Logs of a name nobody owns (a directory an older agent left) are for admins.
        let exists = self.registry.get(name).is_some()
            || tokio::fs::try_exists(self.layout.logs(name))
                .await
                .unwrap_or(false);
        if !exists {
            return Err(Error::NotFound(name.to_string()));
        }
        let path = if deploy {
            self.layout.deploy_log(name)
        } else {
            self.layout.app_log(name)
        };
        crate::logs::open(path, how, self.redactor(name).await).await
    }

    /// Deletes everything of a deployment that has no release (its first deploy failed):
    /// directory, logs, record, checkout, and its entry, so nothing is left of the name.
    /// Called under the deployment's op lock; one with a release is left as it is.
    pub(crate) async fn discard_unreleased(&self, d: &Arc<Deployment>) {
        if !d.discard_if_unreleased() {
            return;
        }
        let keep = kept::survivors(self.has_kept_data(d.name()));
        if let Err(e) = d.forget(&self.layout, keep).await {
            tracing::warn!(deployment = %d.name(), error = %e, "cannot delete what a failed first deploy made");
        }
        self.unregister(d);
        self.free_identity(d).await;
    }

    /// What an instance of `d` reports to: its record and the metrics.
    /// What keeps `d`'s record and metrics up to date with its instance `replica` (0: the
    /// first, 1..: the replicas).
    pub(crate) fn observer(
        &self,
        d: &Arc<Deployment>,
        replica: usize,
        private_port: Option<u16>,
    ) -> Arc<dyn Observer> {
        Arc::new(observer::DeploymentObserver {
            deployment: Arc::downgrade(d),
            replica,
            private_port,
            layout: self.layout.clone(),
            metrics: self.metrics.clone(),
            port_taken: self.port_taken.sender(),
            health_changes: self.health_changes.sender(),
        })
    }
}

/// Creates the data directory (tightening one an older agent left) and the git mirrors'
/// directory. Blocking, once, before anything else runs.
fn prepare_data_dir(layout: &Layout, auth_path: &std::path::Path) -> Result<()> {
    crate::fsmode::create_dir(&layout.deployments(), crate::fsmode::PASS_THROUGH_DIR)
        .map_err(|e| Error::io("creating data directory", layout.deployments(), e))?;
    crate::fsmode::tighten(layout, auth_path);
    crate::disk::reserve::install(&layout.root);
    // Mirrors of private repositories are not for apps or other users.
    crate::fsmode::create_dir(&layout.git(), crate::fsmode::PRIVATE_DIR)
        .map_err(|e| Error::io("creating data directory", layout.git(), e))
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
