//! The node's services: what every deployment on the node shares and the deploy pipeline,
//! recovery and the adapters use (configuration, the data layout, users and secrets,
//! process tracking, venvs and artifacts, the node proxy, metrics). They know nothing of
//! which deployments exist: that is the [`super::Registry`]'s.
//!
//! A deploy step that needs only these takes `&NodeServices`, so its signature says it
//! cannot look at or change another deployment.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::identity;
use crate::auth::Auth;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::proxy::NodeProxy;
use crate::secrets::SecretStore;
use crate::store::Layout;
use crate::tracking::Tracker;
use crate::traffic::Traffic;
use crate::usage::Usage;
use crate::venvs::{KeyedLocks, Venvs};

pub(crate) struct NodeServices {
    pub(super) config: Config,
    pub(super) layout: Layout,
    /// One fetch/checkout at a time per repository mirror.
    pub(super) mirrors: KeyedLocks,
    pub(super) venvs: Arc<Venvs>,
    /// Model and data files by content hash.
    pub(super) artifacts: Arc<crate::artifacts::Artifacts>,
    pub(super) usage: Usage,
    pub(super) metrics: Arc<Metrics>,
    /// Set once every deployment from the store was adopted or started (`/readyz`).
    pub(super) ready: AtomicBool,
    pub(super) started: Instant,
    pub(super) auth: Auth,
    pub(super) secrets: SecretStore,
    /// Who apps run as: their deployment's own user, `run_as`, or the agent's.
    pub(super) app_users: crate::app_user::AppUsers,
    /// Gives every app instance its id and cgroup.
    pub(super) tracker: Arc<Tracker>,
    /// The node proxy in front of deployments released with `strategy: switch`.
    pub(super) proxy: NodeProxy,
    /// What the node proxy served, over time.
    pub(super) traffic: Traffic,
    /// Private ports deploys in progress have picked.
    pub(super) port_reservations: crate::reservations::Reservations,
    /// The node's GPUs and which instance has each.
    pub(super) gpus: Mutex<crate::gpus::GpuPool>,
    /// Deployments whose private port another user's process took: moved to another port.
    pub(super) port_taken: identity::PortTaken,
}

impl NodeServices {
    /// Opens the node's services over a prepared data directory.
    pub(super) async fn open(config: Config, layout: Layout) -> Result<Self> {
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
        Ok(NodeServices {
            artifacts,
            proxy: NodeProxy::new(&layout.root, &config),
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
            mirrors: KeyedLocks::default(),
            usage: Usage::default(),
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
            started: Instant::now(),
        })
    }

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

    /// The URL apps are reached at.
    pub(crate) fn app_url(&self, port: u16) -> String {
        let host = match self.config.app_host {
            ip if ip.is_unspecified() => super::hostname(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{port}")
    }
}
