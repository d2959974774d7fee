//! The supervisor: the registry of the node's deployments (each one a [`Deployment`], the
//! only owner of its state) and the node's services the deploy pipeline, recovery and the
//! adapters use (configuration, data layout, users and secrets, process tracking, venvs,
//! metrics). The registry's lock guards lookups only; nothing is held across I/O.

mod garbage;
mod identity;
mod observer;
mod remove;
mod view;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) use identity::move_off_taken_ports;
pub(crate) use remove::{stop_recorded, Removed, LB_WATCHING};
pub(crate) use view::View;

use crate::auth::Auth;
use crate::config::Config;
use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::instance::Observer;
use crate::metrics::Metrics;
use crate::proxy::NodeProxy;
use crate::secrets::{Redactor, SecretStore};
use crate::store::{self, Layout, Record};
use crate::tracking::{Tracker, Tracking};
use crate::traffic::Traffic;
use crate::usage::Usage;
use crate::venvs::{KeyedLocks, Venvs};

pub(crate) struct Supervisor {
    config: Config,
    layout: Layout,
    deployments: Mutex<BTreeMap<String, Arc<Deployment>>>,
    /// One fetch/checkout at a time per repository mirror.
    mirrors: KeyedLocks,
    venvs: Arc<Venvs>,
    /// Model and data files by content hash.
    artifacts: Arc<crate::artifacts::Artifacts>,
    usage: Usage,
    metrics: Arc<Metrics>,
    /// Set once every deployment from the store was adopted or started (`/readyz`).
    ready: AtomicBool,
    started: Instant,
    auth: Auth,
    secrets: SecretStore,
    /// Who apps run as: their deployment's own user, `run_as`, or the agent's.
    app_users: crate::app_user::AppUsers,
    /// Gives every app instance its id and cgroup.
    tracker: Arc<Tracker>,
    /// The node proxy in front of deployments released with `strategy: switch`.
    proxy: NodeProxy,
    /// What the node proxy served, over time.
    traffic: Traffic,
    /// Private ports deploys in progress have picked.
    port_reservations: crate::reservations::Reservations,
    /// The node's GPUs and which instance has each.
    gpus: Mutex<crate::gpus::GpuPool>,
    /// Deployments whose private port another user's process took: moved to another port.
    port_taken: identity::PortTaken,
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
        let mut map = BTreeMap::new();
        for record in records {
            map.insert(record.name.clone(), Arc::new(Deployment::loaded(record)));
        }
        let auth = Auth::open(config.auth_path())?;
        let secrets = SecretStore::new(layout.root.join("secrets"));
        let app_users = {
            let c = config.clone();
            tokio::task::spawn_blocking(move || crate::app_user::resolve(&c))
                .await
                .map_err(|e| Error::Internal(format!("finding the apps' users: {e}")))??
        };
        let tracker = Arc::new(Tracker::new(&layout.root, config.cgroups));
        let gpus = tokio::task::spawn_blocking(crate::gpus::discover)
            .await
            .map_err(|e| Error::Internal(format!("looking for GPUs: {e}")))?;
        let venvs = Arc::new(Venvs::new(
            &config,
            layout.venvs(),
            layout.root.join("tools"),
        ));
        let artifacts = Arc::new(crate::artifacts::Artifacts::new(layout.artifacts()));
        Ok(Arc::new(Supervisor {
            artifacts,
            proxy: NodeProxy::new(&layout.root, config.proxy_threads),
            traffic: Traffic::default(),
            port_reservations: Default::default(),
            port_taken: identity::PortTaken::default(),
            gpus: Mutex::new(identity::restore_gpus(
                &layout,
                crate::gpus::GpuPool::new(gpus),
            )),
            tracker,
            auth,
            secrets,
            app_users,
            venvs,
            config,
            layout,
            deployments: Mutex::new(map),
            mirrors: KeyedLocks::default(),
            usage: Usage::default(),
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
            started: Instant::now(),
        }))
    }

    // --- the node's services ---------------------------------------------------------

    /// Where apps and the node proxy listen (from `app_host`).
    pub(crate) fn app_host(&self) -> crate::launch::AppHost {
        crate::launch::AppHost(self.config.app_host)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }
    pub(crate) fn secrets(&self) -> &SecretStore {
        &self.secrets
    }
    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }
    pub(crate) fn usage(&self) -> &Usage {
        &self.usage
    }
    pub(crate) fn venvs(&self) -> &Arc<Venvs> {
        &self.venvs
    }
    pub(crate) fn artifacts(&self) -> &Arc<crate::artifacts::Artifacts> {
        &self.artifacts
    }
    pub(crate) fn proxy(&self) -> &NodeProxy {
        &self.proxy
    }
    pub(crate) fn port_reservations(&self) -> &crate::reservations::Reservations {
        &self.port_reservations
    }
    pub(crate) fn traffic(&self) -> &Traffic {
        &self.traffic
    }
    /// The lock a fetch or checkout of mirror `key` holds.
    pub(crate) fn mirror_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.mirrors.get(key)
    }
    /// How long the agent has run.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
    /// Whether every deployment in the store was adopted or started (`/readyz`).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    // --- the registry ----------------------------------------------------------------

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
    fn unregister(&self, d: &Arc<Deployment>) {
        let mut map = self.map();
        if map.get(d.name()).is_some_and(|m| Arc::ptr_eq(m, d)) {
            map.remove(d.name());
        }
        drop(map);
        self.metrics.forget(d.name());
    }

    /// Who owns a deployment, if it exists.
    pub(crate) fn owner_of(&self, name: &str) -> Option<String> {
        self.get(name)?.owner()
    }

    /// Hides the secret values of a deployment (its current release's) in output.
    pub(crate) async fn redactor(&self, name: &str) -> Redactor {
        match self.get(name).and_then(|d| d.current()) {
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
        let exists = self.get(name).is_some()
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
        if let Err(e) = d.forget(&self.layout).await {
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
        })
    }

    /// The URL apps are reached at.
    pub(crate) fn app_url(&self, port: u16) -> String {
        let host = match self.config.app_host {
            ip if ip.is_unspecified() => hostname(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{port}")
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
