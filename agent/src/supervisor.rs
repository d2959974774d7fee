//! The supervisor owns the node's deployments: each one's record, its running instance and
//! a per-deployment lock for deploy and remove. There is no global lock held across I/O:
//! the map lock guards only lookups.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OnceCell;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::instance::{Instance, Observer, State};
use crate::metrics::Metrics;
use crate::pipeline::packages::Toolchain;
use crate::process::{self, AppProcess, Stopped};
use crate::procstat::ProcId;
use crate::spec::Spec;
use crate::store::{self, Layout, Record};
use crate::tracking::{Tracker, Tracking};
use crate::usage::Usage;

/// One deployment on this node.
pub struct Deployment {
    pub name: String,
    /// Held for the whole of a deploy or remove, so they never interleave.
    pub op: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
    /// Held while the record is written, so writes never interleave and the last one wins.
    save_lock: Mutex<()>,
}

pub struct Inner {
    pub record: Record,
    /// The running release, if any.
    pub instance: Option<Arc<Instance>>,
    /// The release being deployed right now.
    pub deploying: Option<u32>,
    /// The owner the deploy in progress was asked for (a first deploy has no release yet).
    pub deploying_owner: Option<String>,
    /// Set once removed, so a concurrent lookup does not resurrect it.
    pub removed: bool,
}

impl Deployment {
    fn new(name: String, record: Record) -> Deployment {
        Deployment {
            name,
            op: Default::default(),
            inner: Mutex::new(Inner {
                deploying_owner: None,
                record,
                instance: None,
                deploying: None,
                removed: false,
            }),
            save_lock: Mutex::new(()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the record as it is now (blocking: a small file, fsynced). A deployment that
    /// was removed is not written back.
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let _write = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        let record = {
            let inner = self.lock();
            if inner.removed {
                return Ok(());
            }
            inner.record.clone()
        };
        store::save(layout, &record)
    }

    /// [`Deployment::save`], logging a failure (the deploy or restart goes on regardless).
    pub fn save_or_log(&self, layout: &Layout) {
        if let Err(e) = self.save(layout) {
            tracing::error!(deployment = %self.name, error = %e, "cannot save record");
        }
    }
}

/// Keeps a deployment's record and the metrics up to date with what its instance does.
struct DeploymentObserver {
    deployment: Weak<Deployment>,
    layout: Layout,
    metrics: Arc<Metrics>,
}

impl Observer for DeploymentObserver {
    fn started(&self, release: u32, id: ProcId, tracking: &Tracking) {
        let Some(d) = self.deployment.upgrade() else {
            return;
        };
        {
            let mut inner = d.lock();
            // A release being deployed is recorded when its deploy succeeds.
            if inner.record.current != Some(release)
                || inner.record.process().map(|p| p.0) == Some(id)
            {
                return;
            }
            inner
                .record
                .set_process(release, Some(id), tracking.clone());
        }
        let layout = self.layout.clone();
        // Off the instance's task: the write is fsynced.
        tokio::task::spawn_blocking(move || d.save_or_log(&layout));
    }

    fn restarted(&self) {
        if let Some(d) = self.deployment.upgrade() {
            self.metrics.restarted(&d.name);
        }
    }

    fn checked(&self, latency: Duration, _healthy: bool) {
        if let Some(d) = self.deployment.upgrade() {
            self.metrics.health_checked(&d.name, latency);
        }
    }
}

/// A lock per key (a repository URL, an environment key): one builder at a time per key.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }

    /// Whether someone holds the lock for `key` right now.
    pub fn is_locked(&self, key: &str) -> bool {
        let map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_some_and(|m| m.try_lock().is_err())
    }
}

/// An environment in use by a deploy in progress; released on drop.
pub struct VenvLease {
    sup: Arc<Supervisor>,
    key: String,
}

impl Drop for VenvLease {
    fn drop(&mut self) {
        let mut map = self.sup.venv_leases_map();
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// A deployment as `status` shows it.
#[derive(Debug, Clone)]
pub struct View {
    pub spec: Option<Spec>,
    pub name: String,
    pub state: String,
    pub release: u32,
    pub git_ref: String,
    pub commit: String,
    pub packages_hash: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub url: String,
    pub uptime: Duration,
    pub cpu_percent: f32,
    pub memory_bytes: u64,
    pub last_health: String,
    pub message: String,
    pub last_exit_code: Option<i32>,
    pub next_restart_in: Option<Duration>,
    pub deployed_at: i64,
}

pub struct Supervisor {
    pub config: Config,
    pub layout: Layout,
    deployments: Mutex<BTreeMap<String, Arc<Deployment>>>,
    /// One fetch/checkout at a time per repository mirror.
    pub repo_locks: KeyedLocks,
    /// One build at a time per environment key.
    pub venv_locks: KeyedLocks,
    toolchain: OnceCell<Toolchain>,
    /// Environments deploys in progress use, with how many use each.
    venv_leases: Mutex<HashMap<String, usize>>,
    pub usage: Usage,
    pub metrics: Arc<Metrics>,
    /// Set once every deployment from the store was adopted or started (`/readyz`).
    pub ready: AtomicBool,
    pub started: Instant,
    /// Users and groups (authentication and ownership).
    pub auth: crate::auth::Auth,
    /// Secrets per owner.
    pub secrets: crate::secrets::SecretStore,
    /// The uid and gid apps run as (`run_as`, when the agent is root).
    pub run_as: Option<(u32, u32)>,
    /// Gives every app instance its id and cgroup.
    pub tracker: Arc<Tracker>,
    /// The venvs as the last collection saw them.
    venvs: Mutex<crate::pipeline::venv_gc::Summary>,
}

impl Supervisor {
    /// Loads the node-local store. [`Supervisor::recover`] then takes the apps over.
    pub fn new(config: Config) -> Result<Arc<Self>> {
        let layout = Layout::new(config.data_dir.clone());
        crate::fsmode::create_dir(&layout.deployments(), crate::fsmode::PASS_THROUGH_DIR)
            .map_err(|e| Error::io("creating data directory", layout.deployments(), e))?;
        // Blocking, once, before anything else runs: a data directory of an older agent.
        crate::fsmode::tighten(&layout, &config.auth_path());
        // Mirrors of private repositories are not for apps or other users.
        crate::fsmode::create_dir(&layout.git(), crate::fsmode::PRIVATE_DIR)
            .map_err(|e| Error::io("creating data directory", layout.git(), e))?;
        let mut map = BTreeMap::new();
        for record in store::load_all(&layout) {
            let name = record.name.clone();
            map.insert(name.clone(), Arc::new(Deployment::new(name, record)));
        }
        let auth = crate::auth::Auth::open(config.auth_path())?;
        let secrets = crate::secrets::SecretStore::new(layout.root.join("secrets"));
        let run_as = crate::app_user::resolve(&config)?;
        let tracker = Arc::new(Tracker::new(&layout.root, config.cgroups));
        Ok(Arc::new(Supervisor {
            tracker,
            auth,
            secrets,
            run_as,
            config,
            layout,
            deployments: Mutex::new(map),
            repo_locks: KeyedLocks::default(),
            venv_locks: KeyedLocks::default(),
            toolchain: OnceCell::new(),
            venv_leases: Mutex::new(HashMap::new()),
            usage: Usage::default(),
            metrics: Arc::new(Metrics::new()),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            venvs: Mutex::default(),
        }))
    }

    pub async fn toolchain(&self) -> &Toolchain {
        let tools = self.layout.root.join("tools");
        self.toolchain
            .get_or_init(|| Toolchain::detect(self.config.installer, &tools))
            .await
    }

    /// Who owns a deployment (its current release's owner, else its last one's).
    pub fn owner_of(&self, name: &str) -> Option<String> {
        let d = self.get(name)?;
        let inner = d.lock();
        inner
            .record
            .current_release()
            .or(inner.record.releases.last())
            .map(|r| r.spec.owner.clone())
            .or_else(|| inner.deploying_owner.clone())
    }

    /// The values of `names` in `owner`'s secrets, or the names that are missing.
    pub fn secret_values(
        &self,
        owner: &str,
        names: &[String],
    ) -> std::result::Result<Vec<(String, String)>, Vec<String>> {
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match self.secrets.get(owner, name) {
                Ok(Some((v, crate::secrets::Kind::Env))) => {
                    values.push((name.clone(), String::from_utf8_lossy(&v).into_owned()))
                }
                _ => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(values)
        } else {
            Err(missing)
        }
    }

    /// Hides the secret values of a deployment (its current release's) in output.
    pub fn redactor(&self, name: &str) -> crate::secrets::Redactor {
        let spec = self.get(name).and_then(|d| {
            let inner = d.lock();
            inner.record.current_release().map(|r| r.spec.clone())
        });
        let mut values: Vec<String> = Vec::new();
        if let Some(spec) = spec {
            if let Ok(v) = self.secret_values(&spec.owner, &spec.secrets) {
                values.extend(v.into_iter().map(|(_, v)| v));
            }
            if let Ok(Some((_, v))) = self.secrets.git_credential(&spec.owner, &spec.repo) {
                values.push(String::from_utf8_lossy(&v).into_owned());
            }
        }
        crate::secrets::Redactor::new(values)
    }

    /// Marks an environment as used by a deploy in progress (so GC leaves it alone) until
    /// the returned lease is dropped.
    pub fn lease_venv(self: &Arc<Self>, key: &str) -> VenvLease {
        *self.venv_leases_map().entry(key.to_string()).or_insert(0) += 1;
        VenvLease {
            sup: self.clone(),
            key: key.to_string(),
        }
    }

    fn venv_leases_map(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.venv_leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the venvs no kept release of any deployment uses and no deploy in progress
    /// holds within `venv_keep_bytes` and `venv_keep_age`, least recently used first.
    /// Blocking (walks the venvs).
    pub fn collect_venv_garbage(&self) -> Vec<String> {
        let mut keep = std::collections::HashSet::new();
        for d in self.all() {
            let inner = d.lock();
            for r in &inner.record.releases {
                let kept = inner.record.current == Some(r.number)
                    || self.layout.release(&d.name, r.number).exists();
                if kept && !r.packages_hash.is_empty() {
                    keep.insert(r.packages_hash.clone());
                }
            }
        }
        let leases = self.venv_leases_map().clone();
        let (removed, summary) = crate::pipeline::venv_gc::collect(
            &self.layout.venvs(),
            &keep,
            |k| leases.get(k).is_some_and(|n| *n > 0) || self.venv_locks.is_locked(k),
            self.config.venv_keep_bytes,
            self.config.venv_keep_age,
        );
        *self.venvs.lock().unwrap_or_else(|p| p.into_inner()) = summary;
        if !removed.is_empty() {
            tracing::info!(removed = ?removed, "removed unused environments");
        }
        removed
    }

    /// The venvs as the last collection saw them.
    pub(crate) fn venv_summary(&self) -> crate::pipeline::venv_gc::Summary {
        *self.venvs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Deployment>>> {
        self.deployments.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Deployment>> {
        self.map().get(name).cloned()
    }

    pub fn get_or_create(&self, name: &str) -> Arc<Deployment> {
        self.map()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Deployment::new(name.to_string(), Record::new(name))))
            .clone()
    }

    /// Deletes everything of a deployment that has no release (its first deploy failed):
    /// directory, logs, record, checkout, and its entry, so nothing is left of the name.
    /// Called under the deployment's op lock; one with a release is left as it is.
    pub async fn discard_unreleased(&self, d: &Arc<Deployment>) {
        {
            let _write = d.save_lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut inner = d.lock();
            if inner.record.current.is_some() || inner.instance.is_some() {
                return;
            }
            // A deploy waiting for the lock starts over with a fresh entry.
            inner.removed = true;
        }
        let (layout, name) = (self.layout.clone(), d.name.clone());
        match tokio::task::spawn_blocking(move || store::delete(&layout, &name)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(deployment = %d.name, error = %e, "cannot delete what a failed first deploy made")
            }
            Err(e) => {
                tracing::warn!(deployment = %d.name, error = %e, "cannot delete what a failed first deploy made")
            }
        }
        let mut map = self.map();
        if map.get(&d.name).is_some_and(|m| Arc::ptr_eq(m, d)) {
            map.remove(&d.name);
        }
        drop(map);
        self.metrics.forget(&d.name);
    }

    /// What an instance of `d` reports to: its record and the metrics.
    pub fn observer(&self, d: &Arc<Deployment>) -> Arc<dyn Observer> {
        Arc::new(DeploymentObserver {
            deployment: Arc::downgrade(d),
            layout: self.layout.clone(),
            metrics: self.metrics.clone(),
        })
    }

    pub fn all(&self) -> Vec<Arc<Deployment>> {
        self.map().values().cloned().collect()
    }

    /// The URL apps are reached at.
    pub fn app_url(&self, port: u16) -> String {
        let host = match self.config.app_host {
            ip if ip.is_unspecified() => hostname(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{port}")
    }

    /// Which other deployment on this node uses `port`, if any: its name and owner.
    pub fn port_owner(&self, port: u16, except: &str) -> Option<(String, String)> {
        self.all().into_iter().find_map(|d| {
            if d.name == except {
                return None;
            }
            let inner = d.lock();
            inner
                .record
                .current_release()
                .filter(|r| r.spec.port == port)
                .map(|r| (d.name.clone(), r.spec.owner.clone()))
        })
    }

    /// Process group leaders of every running app (for telling ours from foreign ports).
    pub fn running_pids(&self) -> Vec<u32> {
        self.running_apps()
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Every running app: its first process (the group leader) and how the others are found.
    pub fn running_apps(&self) -> Vec<(u32, Tracking)> {
        self.all()
            .iter()
            .filter_map(|d| {
                let inner = d.lock();
                match inner.instance.as_ref().map(|i| i.snapshot()) {
                    Some(s) if s.pid.is_some() => s.pid.map(|p| (p, s.tracking)),
                    _ => inner.record.pid.map(|p| (p, inner.record.tracking.clone())),
                }
            })
            .collect()
    }

    pub fn status(&self, name: Option<&str>) -> Result<Vec<View>> {
        let deployments = match name {
            Some(n) => vec![self.get(n).ok_or_else(|| Error::NotFound(n.to_string()))?],
            None => self.all(),
        };
        Ok(deployments.iter().map(|d| self.view(d)).collect())
    }

    fn view(&self, d: &Deployment) -> View {
        let inner = d.lock();
        let current = inner.record.current_release();
        let spec = current.map(|r| r.spec.clone());
        let snap = inner.instance.as_ref().map(|i| i.snapshot());
        let (state, message) = match (&snap, inner.deploying) {
            (Some(s), _) => (s.state.as_str().to_string(), s.message.clone()),
            (None, Some(n)) => (
                "deploying".to_string(),
                format!("release {n} is being deployed"),
            ),
            (None, None) if inner.record.pid.is_some() => (
                "unhealthy".to_string(),
                "the app was started by an earlier run of the agent and is not supervised"
                    .to_string(),
            ),
            (None, None) if current.is_some() => ("stopped".to_string(), String::new()),
            (None, None) => (
                "failed".to_string(),
                inner
                    .record
                    .releases
                    .last()
                    .map(|r| r.result.as_str().to_string())
                    .unwrap_or_default(),
            ),
        };
        let pid = snap.as_ref().and_then(|s| s.pid).or(inner.record.pid);
        let (cpu_percent, memory_bytes) = pid.map(|p| self.usage.of(p)).unwrap_or_default();
        let uptime = snap
            .as_ref()
            .filter(|s| s.pid.is_some())
            .and_then(|s| s.started_at)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        View {
            name: d.name.clone(),
            state,
            release: inner.record.current.unwrap_or(0),
            git_ref: current.map(|r| r.git_ref.clone()).unwrap_or_default(),
            commit: current.map(|r| r.commit.clone()).unwrap_or_default(),
            packages_hash: current.map(|r| r.packages_hash.clone()).unwrap_or_default(),
            pid,
            restarts: snap.as_ref().map(|s| s.restarts).unwrap_or(0),
            url: spec
                .as_ref()
                .map(|s| self.app_url(s.port))
                .unwrap_or_default(),
            uptime,
            cpu_percent,
            memory_bytes,
            last_health: snap
                .as_ref()
                .map(|s| s.last_health.clone())
                .unwrap_or_default(),
            message,
            last_exit_code: snap.as_ref().and_then(|s| s.last_exit_code),
            next_restart_in: snap
                .as_ref()
                .and_then(|s| s.next_restart_at)
                .map(|t| t.saturating_duration_since(Instant::now())),
            deployed_at: current.map(|r| r.deployed_at).unwrap_or(0),
            spec,
        }
    }

    /// Every deployment's present state and resource use, for `/metrics`.
    pub fn present(&self) -> Vec<crate::metrics::Present> {
        self.all()
            .iter()
            .map(|d| {
                let v = self.view(d);
                crate::metrics::Present {
                    deployment: v.name,
                    state: state_name(&v.state),
                    cpu_percent: v.cpu_percent,
                    memory_bytes: v.memory_bytes,
                }
            })
            .collect()
    }

    /// Whether a deployment is healthy right now (for load balancers; from cached state).
    pub fn healthy(&self, name: &str) -> Option<(bool, String, String)> {
        let d = self.get(name)?;
        let inner = d.lock();
        let snap = inner.instance.as_ref().map(|i| i.snapshot());
        Some(match snap {
            Some(s) => (
                s.state == State::Healthy,
                s.state.as_str().to_string(),
                s.last_health,
            ),
            None => (false, "stopped".to_string(), String::new()),
        })
    }

    /// Stops a deployment on this node and deletes its directories and record.
    pub async fn remove(&self, name: &str) -> Result<(Option<u32>, Stopped)> {
        let d = match self.get(name) {
            Some(d) => d,
            // A directory without a record (a failed first deploy of an older agent, an
            // unreadable record): removed like a deployment that runs nothing.
            None if tokio::fs::symlink_metadata(self.layout.deployment(name))
                .await
                .is_ok() =>
            {
                self.get_or_create(name)
            }
            None => return Err(Error::NotFound(name.to_string())),
        };
        let _op = d.op.lock().await;
        let (instance, orphan, kill_timeout) = {
            let mut inner = d.lock();
            if inner.removed {
                return Err(Error::NotFound(name.to_string()));
            }
            let kill_timeout = inner
                .record
                .current_release()
                .map(|r| r.spec.kill_timeout)
                .unwrap_or(crate::spec::DEFAULT_KILL_TIMEOUT);
            let orphan = inner
                .record
                .process()
                .map(|p| (p.0, inner.record.tracking.clone()));
            inner.record.set_process(0, None, Tracking::default());
            (inner.instance.take(), orphan, kill_timeout)
        };
        let stopped = match (instance, orphan) {
            (Some(i), _) => i.stop().await,
            (None, Some((id, t))) => (Some(id.pid), stop_recorded(id, t, kill_timeout).await),
            (None, None) => (None, Stopped::NotRunning),
        };
        {
            // Under the write lock, so no record write of a restart can bring it back.
            let _write = d.save_lock.lock().unwrap_or_else(|p| p.into_inner());
            d.lock().removed = true;
            store::delete(&self.layout, name)?;
        }
        self.map().remove(name);
        // Its environments may now be unused (a little file-system work).
        self.collect_venv_garbage();
        self.metrics.forget(name);
        Ok(stopped)
    }
}

/// Stops a recorded process that no instance supervises (one left by an earlier agent
/// run), with every process of its instance.
pub async fn stop_recorded(id: ProcId, tracking: Tracking, grace: Duration) -> Stopped {
    process::stop_group(&mut AppProcess::adopt(id, tracking), grace).await
}

/// The static name of a state as `view` spells it.
fn state_name(s: &str) -> &'static str {
    State::ALL
        .iter()
        .map(|st| st.as_str())
        .find(|n| *n == s)
        .unwrap_or("unknown")
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
