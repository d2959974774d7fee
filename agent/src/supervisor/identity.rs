//! Each deployment's user and its own directories on the node: `DATA_DIR` (its home,
//! kept across releases) and the private `/tmp` its processes see. See
//! [`crate::app_user`] for who runs as what, [`crate::walls`] for what the processes get.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Supervisor;
use crate::app_user::AppUsers;
use crate::deployment::Deployment;
use crate::identity::{self, Identity};
use crate::walls::Walls;

/// Which instance has which GPUs, kept across agent restarts.
const GPUS_FILE: &str = "gpus.json";

/// The GPU assignment an earlier run of the agent recorded, given back to the same holders.
pub(super) fn restore_gpus(
    layout: &crate::store::Layout,
    mut pool: crate::gpus::GpuPool,
) -> crate::gpus::GpuPool {
    if pool.total() == 0 {
        return pool;
    }
    let Ok(text) = std::fs::read(layout.root.join(GPUS_FILE)) else {
        return pool;
    };
    let held: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&text).unwrap_or_default();
    for (holder, uuids) in held {
        for problem in pool.restore(&holder, &uuids) {
            tracing::warn!(holder = %holder, "{problem}");
        }
    }
    pool
}

/// The uid an app would run as when its deployment somehow has no identity: `nobody`,
/// never root.
const NOBODY: u32 = 65534;

impl Supervisor {
    /// The node proxy's route for `d`'s `release` on `private_ports`: their listeners must
    /// be `d`'s user's.
    pub(crate) fn route(
        &self,
        d: &Deployment,
        release: &crate::store::ReleaseRecord,
        private_ports: &[u16],
    ) -> crate::proxy::RouteSpec {
        let owner = self.identity_of(d).map(|id| id.uid);
        crate::launch::route(self.app_host(), release, private_ports, owner)
    }

    /// The user `d`'s processes run as; `None`: the agent's own.
    pub(crate) fn identity_of(&self, d: &Deployment) -> Option<Identity> {
        match &self.app_users {
            AppUsers::Agent => None,
            AppUsers::Named(id) => Some(id.clone()),
            AppUsers::PerDeployment(_) => Some(d.identity().unwrap_or_else(|| {
                tracing::error!(deployment = %d.name(), "no identity recorded: the app runs as nobody");
                Identity {
                    uid: NOBODY,
                    gid: NOBODY,
                    user: "nobody".into(),
                }
            })),
        }
    }

    /// The walls `d`'s processes run behind; `None` when the agent cannot build them (it is
    /// not root).
    pub(crate) fn walls_for(&self, d: &Deployment) -> Option<Walls> {
        let id = self.identity_of(d)?;
        Some(Walls {
            uid: id.uid,
            gid: id.gid,
            user: id.user,
            home: self.layout.data(d.name()),
            tmp: Some(self.layout.tmp(d.name())),
            keep_in_tmp: self.data_in_tmp(),
            hidden_devices: Vec::new(),
        })
    }

    /// Makes sure `d` has its own user (made now for a new deployment, or again if the
    /// node lost it) and its directories, before any of its processes starts. A
    /// deployment that had none (an upgraded agent) gets its files given to it.
    /// `Ok(true)` when it was given its own user just now although it has releases (an
    /// upgraded agent: what runs still runs as the shared user of before).
    pub(crate) async fn ensure_identity(&self, d: &Deployment) -> Result<bool, String> {
        let name = d.name().to_string();
        let (data, tmp, dir) = (
            self.layout.data(&name),
            self.layout.tmp(&name),
            self.layout.deployment(&name),
        );
        let mut moved = false;
        let id = match &self.app_users {
            AppUsers::Agent => None,
            AppUsers::Named(id) => Some(id.clone()),
            AppUsers::PerDeployment(range) => {
                let (range, recorded, home) = (*range, d.identity(), data.clone());
                let made = tokio::task::spawn_blocking(move || {
                    identity::ensure(range, recorded.as_ref(), &home)
                })
                .await
                .map_err(|e| format!("internal error: {e}"))??;
                let new = d.identity().as_ref() != Some(&made);
                if new {
                    moved = d.identity().is_none() && d.has_releases();
                    d.set_identity(made.clone());
                    if d.has_releases() {
                        // An earlier agent ran it as a shared user: its files become its own.
                        let (releases, owner) = (dir.join("releases"), made.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            crate::process::chown_tree(&releases, owner.uid, owner.gid)
                        })
                        .await;
                    }
                }
                Some(made)
            }
        };
        let owner = id.as_ref().map(|i| (i.uid, i.gid));
        // Only apps behind walls (the agent is root) get a private /tmp.
        let keep = self.data_in_tmp().filter(|_| owner.is_some());
        tokio::task::spawn_blocking(move || {
            crate::fsmode::create_dir(&dir, crate::fsmode::PASS_THROUGH_DIR)?;
            // Its releases' numbers are nobody else's business either.
            crate::fsmode::create_dir(&dir.join("releases"), crate::fsmode::PASS_THROUGH_DIR)?;
            own_dir(&data, owner)?;
            if owner.is_none() {
                return Ok(());
            }
            own_dir(&tmp, owner)?;
            // Where the data directory shows inside the private /tmp: the agent's, not
            // the app's, to change.
            match keep.and_then(|k| crate::walls::keep_in_tmp(&tmp, &k)) {
                Some(at) => root_path(&tmp, &at),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| format!("internal error: {e}"))?
        .map_err(|e| format!("preparing the deployment's own directories: {e}"))?;
        Ok(moved)
    }
}

impl Supervisor {
    /// Has `name` restarted (a new process beside the old one, on new private ports), saying
    /// `why` in the agent's log.
    pub(crate) fn restart_soon(&self, name: &str, why: &str) {
        let _ = self.port_taken.tx.send((name.to_string(), why.to_string()));
    }

    /// The node's GPUs and who has them.
    pub(crate) fn gpu_pool(&self) -> std::sync::MutexGuard<'_, crate::gpus::GpuPool> {
        self.gpus.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frees `d`'s own user once it is removed (its processes stopped, its files deleted):
    /// the uid may go to a new deployment.
    pub(crate) async fn free_identity(&self, d: &Deployment) {
        if !matches!(self.app_users, AppUsers::PerDeployment(_)) {
            return;
        }
        if let Some(id) = d.identity() {
            let _ = tokio::task::spawn_blocking(move || identity::free(&id)).await;
        }
    }

    /// Frees the GPUs `d`'s instances had (it was removed).
    pub(crate) fn free_gpus(&self, d: &Deployment) {
        self.gpu_pool().release_deployment(d.name());
        self.save_gpus();
    }

    /// Writes which instance has which GPUs (`gpus.json`), so a restarted agent gives each
    /// the same ones again (its adopted processes still use them).
    pub(crate) fn save_gpus(&self) {
        let held: std::collections::BTreeMap<String, Vec<String>> = {
            let pool = self.gpu_pool();
            if pool.total() == 0 {
                return;
            }
            pool.holders()
                .into_iter()
                .map(|(h, gpus)| (h, gpus.into_iter().map(|g| g.uuid).collect()))
                .collect()
        };
        let path = self.layout.root.join(GPUS_FILE);
        match serde_json::to_vec_pretty(&held) {
            Ok(bytes) => {
                if let Err(e) = crate::fsmode::write_atomic(&path, &bytes) {
                    tracing::warn!(error = %e, "cannot record the GPUs' assignment");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot record the GPUs' assignment"),
        }
    }
}

impl Supervisor {
    /// The data directory, when it is inside the node's `/tmp` (canonical path).
    fn data_in_tmp(&self) -> Option<std::path::PathBuf> {
        let root = self
            .layout
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.layout.root.clone());
        root.starts_with("/tmp").then_some(root)
    }
}

/// Creates the directories from `base` (exclusive) down to `at`, owned by the agent and
/// passable by others (0711).
fn root_path(base: &Path, at: &Path) -> std::io::Result<()> {
    let Ok(rel) = at.strip_prefix(base) else {
        return Ok(());
    };
    let mut p = base.to_path_buf();
    for part in rel.components() {
        p.push(part);
        match std::fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", p.display()),
                ))
            }
        }
        std::os::unix::fs::lchown(&p, Some(0), Some(0))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// Creates `dir` (0700) for `owner` (`None`: the agent), or gives an existing one to it.
fn own_dir(dir: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let with = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(with(e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(with)?;
    if let Some((uid, gid)) = owner {
        let meta = std::fs::symlink_metadata(dir).map_err(with)?;
        if meta.uid() != uid || meta.gid() != gid {
            crate::process::chown_tree(dir, uid, gid).map_err(with)?;
        }
    }
    Ok(())
}

/// Deployments to restart on new private ports, with why, for [`move_off_taken_ports`].
pub(crate) struct PortTaken {
    tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>>,
}

impl Default for PortTaken {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        PortTaken {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
        }
    }
}

impl PortTaken {
    pub(crate) fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<(String, String)> {
        self.tx.clone()
    }
}

/// At most one move of a deployment to another port in this long.
const MOVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Moves a deployment whose private port another user's process took to another private
/// port: a restart (a new process beside the old one, traffic switched when it is
/// healthy), as `deployctl restart` does; its deploy log says why.
pub(crate) async fn move_off_taken_ports(sup: std::sync::Arc<Supervisor>) {
    let rx = sup
        .port_taken
        .rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(mut rx) = rx else {
        return;
    };
    let mut moved: std::collections::HashMap<String, std::time::Instant> = Default::default();
    while let Some((name, why)) = rx.recv().await {
        if moved.get(&name).is_some_and(|at| at.elapsed() < MOVE_EVERY) {
            continue;
        }
        moved.insert(name.clone(), std::time::Instant::now());
        tracing::warn!(deployment = %name, "{why}: restarting it on another port");
        match crate::pipeline::spawn_relaunch(sup.clone(), &name, false) {
            Ok(mut events) => {
                tokio::spawn(async move {
                    use tokio_stream::StreamExt;
                    while events.next().await.is_some() {}
                });
            }
            Err(e) => tracing::warn!(deployment = %name, error = %e, "cannot restart it"),
        }
    }
}
