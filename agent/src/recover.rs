//! Taking the node back after the agent starts: every deployment in the store that has a
//! current release is either re-adopted (its recorded process still runs: same pid and same
//! start time, so the agent was restarted and the app was not) or started again at that
//! release (the process is gone: a reboot, or the app died while the agent was away).

use std::collections::HashMap;
use std::sync::Arc;

use crate::deployment::Deployment;
use crate::instance::{Instance, InstanceConfig};
use crate::launch::instance_config;
use crate::layout::Layout;
use crate::process::Stopped;
use crate::store::ReleaseRecord;
use crate::supervisor::{stop_recorded, Supervisor};

/// What recovery did with one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// Its app still ran and is supervised again (pid).
    Adopted(u32),
    /// Its app was gone and was started again at its release.
    Started,
    /// Nothing to run (no current release).
    Nothing,
}

impl Supervisor {
    /// Adopts or restarts every deployment, then marks the agent ready. Never waits for a
    /// restarted app to become healthy (status shows how it goes).
    pub(crate) async fn recover(self: &Arc<Self>) {
        for d in self.registry().all() {
            let outcome = recover_one(self, &d).await;
            tracing::info!(deployment = %d.name(), ?outcome, "recovered");
        }
        // Empty cgroups of instances that ended while the agent was away.
        let keep: Vec<_> = self
            .registry()
            .running_apps()
            .into_iter()
            .flat_map(|(_, t)| t.cgroup.into_iter().chain(t.limits))
            .collect();
        self.tracker().remove_unused(keep).await;
        self.set_ready();
    }
}

/// The deploy that was in progress when the agent stopped, if any: recorded as
/// interrupted, what it started stopped, its release directory (no release's) deleted. A
/// first deploy leaves nothing behind (false: the deployment is gone). Under the
/// deployment's lock, before its journal is finished (which stops the same processes, and
/// a restart's).
async fn interrupted_deploy(sup: &Arc<Supervisor>, d: &Arc<Deployment>) -> bool {
    let Some(i) = d.take_interrupted() else {
        return true;
    };
    tracing::warn!(deployment = %d.name(), release = i.release, result = %i.result, "a deploy was in progress when the agent stopped");
    let grace = d
        .current()
        .map(|r| r.spec.kill_timeout)
        .unwrap_or(crate::spec::DEFAULT_KILL_TIMEOUT);
    for (id, tracking) in i.processes {
        let how = stop_recorded(id, tracking, grace).await;
        tracing::warn!(deployment = %d.name(), pid = id.pid, how = how.as_str(), "stopped a process of the interrupted deploy");
    }
    if i.orphan {
        let dir = sup.layout().release(d.name(), i.release);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(deployment = %d.name(), dir = %dir.display(), error = %e, "cannot delete the interrupted deploy's release directory");
            }
        }
    }
    d.save_or_log(sup.layout()).await;
    if d.current().is_some() {
        return true;
    }
    sup.discard_unreleased(d).await;
    false
}

/// Recovers one deployment under its lock, in phases: only once and only if no deploy
/// took it over, its interrupted deploy and its journal finished, its identity, its route
/// set again, its replicas, then its first instance adopted or started again.
async fn recover_one(sup: &Arc<Supervisor>, d: &Arc<Deployment>) -> Recovered {
    // Only what the store had when the agent started (deploys are served meanwhile), and
    // never beside a deploy of it: one that ran first leaves nothing to recover.
    if !d.take_recovery() {
        return Recovered::Nothing;
    }
    let Some(_op) = d.begin().await else {
        return Recovered::Nothing;
    };
    if d.instance().is_some() {
        return Recovered::Nothing;
    }
    if !interrupted_deploy(sup, d).await {
        return Recovered::Nothing;
    }
    let Some(release) = journal_finished(sup, d).await else {
        return Recovered::Nothing;
    };
    if d.is_stopped() {
        // `deployctl stop`: it stays stopped until `deployctl start`.
        return Recovered::Nothing;
    }
    if d.is_sleeping() {
        // Its port stays the proxy's, and the next request wakes it.
        if let Err(e) = sup.proxy().set_route(sup.sleeping_route(d, &release)).await {
            tracing::error!(deployment = %d.name(), error = %e, "cannot route the sleeping deployment's port");
        }
        return Recovered::Nothing;
    }
    let moved = own_identity(sup, d).await;
    let cfg = instance_config(sup, d, &release, d.private_port(), 0).await;
    if d.private_port().is_some() {
        route_again(sup, d, &release, moved).await;
    }
    if moved {
        sup.restart_soon(
            d.name(),
            "it ran as a user shared with other deployments (an earlier agent version); now it has its own",
        );
    }
    recover_replicas(sup, d, &release).await;
    adopt_or_restart(d, &release, cfg).await
}

/// What a deploy or restart had in flight, undone or finished (the journal); then the
/// current release, if there is one. A first deploy the agent did not finish leaves
/// nothing of it.
async fn journal_finished(sup: &Arc<Supervisor>, d: &Arc<Deployment>) -> Option<ReleaseRecord> {
    let first_deploy_cut_short = d.current().is_none() && !d.journal().starting.is_empty();
    sup.finish_journal(d).await;
    let release = d.current();
    if release.is_none() && first_deploy_cut_short {
        sup.discard_unreleased(d).await;
    }
    release
}

/// The deployment's user, before any of its processes starts: made again if the node lost
/// it, made now for a deployment an older agent ran as a shared user (true: it moved off
/// that user).
async fn own_identity(sup: &Arc<Supervisor>, d: &Arc<Deployment>) -> bool {
    match sup.ensure_identity(d).await {
        Ok(moved) => {
            d.save_or_log(sup.layout()).await;
            moved
        }
        Err(e) => {
            tracing::error!(deployment = %d.name(), error = %e, "no identity for the deployment");
            false
        }
    }
}

/// The deployment's route, set again: the proxy serves its persisted routes, this one in
/// case it does not. What `moved` off a shared user still runs as it until its restart:
/// served as it is meanwhile.
async fn route_again(sup: &Supervisor, d: &Deployment, release: &ReleaseRecord, moved: bool) {
    let mut route = sup.route(d, release, &d.private_ports());
    if moved {
        route.backends.iter_mut().for_each(|b| b.owner = None);
    }
    if let Err(e) = sup.proxy().set_route(route).await {
        tracing::error!(deployment = %d.name(), error = %e, "cannot route the deployment's port to it");
    }
}

/// The current release's first instance: adopted if the process the record names still
/// runs, otherwise what is left of it (or of another release) stopped and the instance
/// started again like a restart, not like a deploy (retried by its restart policy).
async fn adopt_or_restart(
    d: &Deployment,
    release: &ReleaseRecord,
    cfg: InstanceConfig,
) -> Recovered {
    let grace = release.spec.kill_timeout;
    match d.recorded_process() {
        Some((id, r, tracking)) if r == release.number && id.is_running() => {
            d.recovered(Arc::new(Instance::adopt(cfg, id, tracking)), None);
            return Recovered::Adopted(id.pid);
        }
        Some((id, _, tracking)) if id.is_running() => {
            // A release other than the current one (the agent died during a deploy).
            let how = stop_recorded(id, tracking, grace).await;
            tracing::warn!(deployment = %d.name(), pid = id.pid, how = how.as_str(), "stopped an app of another release left by an earlier run");
        }
        Some((id, _, tracking)) => {
            // Its first process is gone; what it started may not be (daemonized children).
            let how = stop_recorded(id, tracking, grace).await;
            if how != Stopped::NotRunning {
                tracing::warn!(deployment = %d.name(), pid = id.pid, how = how.as_str(), "stopped what an app that ended while the agent was away had left running");
            }
        }
        None => {}
    }
    d.recovered(Arc::new(Instance::restore(cfg)), Some(release.number));
    Recovered::Started
}

/// The current release's other instances (`replicas` > 1): each adopted if its process
/// still runs, else started again on its private port.
async fn recover_replicas(sup: &Arc<Supervisor>, d: &Arc<Deployment>, release: &ReleaseRecord) {
    let (mut instances, mut restarted) = (Vec::new(), Vec::new());
    for (i, r) in d.recorded_replicas().into_iter().enumerate() {
        let index = i + 1;
        let cfg = instance_config(sup, d, release, Some(r.private_port), index).await;
        match r.process() {
            Some(id) if id.is_running() => {
                instances.push(Arc::new(Instance::adopt(cfg, id, r.tracking)));
                continue;
            }
            Some(id) => {
                // What a replica that ended while the agent was away left running.
                stop_recorded(id, r.tracking, release.spec.kill_timeout).await;
            }
            None => {}
        }
        restarted.push(index);
        instances.push(Arc::new(Instance::restore(cfg)));
    }
    d.replicas_recovered(instances, &restarted);
}

/// Deletes the release directories no record names (every deployment's record numbers
/// them: `recorded`, by name): an agent killed during a deploy (a release's record is
/// written when its deploy ends) leaves one behind, or a whole deployment directory
/// without a record on a first deploy. A deployment whose record could not be read keeps
/// them all. Only when the agent starts, before it serves: no deploy can be filling one
/// then. Blocking.
pub(crate) fn remove_unrecorded_releases(layout: &Layout, recorded: &HashMap<String, Vec<u32>>) {
    let Ok(deployments) = std::fs::read_dir(layout.deployments()) else {
        return;
    };
    for deployment in deployments.flatten() {
        let name = deployment.file_name().to_string_lossy().into_owned();
        let Ok(releases) = std::fs::read_dir(deployment.path().join("releases")) else {
            continue;
        };
        let known = recorded.get(&name);
        if known.is_none() && layout.record(&name).exists() {
            // A record this agent cannot read (logged): its releases are left alone.
            continue;
        }
        for release in releases.flatten() {
            let Some(n) = release
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if known.is_some_and(|k| k.contains(&n)) {
                continue;
            }
            let dir = release.path();
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(deployment = %name, release = n, dir = %dir.display(), "deleted a release directory no record names (its deploy never ended: the agent was stopped during it)")
                }
                Err(e) => {
                    tracing::warn!(deployment = %name, dir = %dir.display(), error = %e, "cannot delete a release directory no record names")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_directories_no_record_names_go() {
        let root = std::env::temp_dir().join(format!("recover-test-{}", std::process::id()));
        let layout = Layout::new(root.clone());
        for (name, n) in [("web", 1), ("web", 2), ("web", 3), ("ghost", 1), ("odd", 1)] {
            std::fs::create_dir_all(layout.release(name, n)).unwrap();
        }
        std::fs::write(layout.record("odd"), "not a record").unwrap();
        std::fs::create_dir_all(layout.deployment("web").join("releases/notes")).unwrap();
        let recorded = HashMap::from([("web".to_string(), vec![1, 2])]);
        remove_unrecorded_releases(&layout, &recorded);
        assert!(layout.release("web", 1).is_dir() && layout.release("web", 2).is_dir());
        assert!(!layout.release("web", 3).exists());
        assert!(!layout.release("ghost", 1).exists());
        assert!(
            layout.release("odd", 1).is_dir(),
            "an unreadable record keeps its releases"
        );
        assert!(
            layout.deployment("web").join("releases/notes").is_dir(),
            "not a release"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
