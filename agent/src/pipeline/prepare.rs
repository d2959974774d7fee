//! The release prepared: resolve → fetch → checkout, with packages and artifacts at the
//! same time where they can be (the venv while the code is fetched when it does not depend
//! on the checkout, else after it; the artifacts from the start), then the artifacts linked
//! into the checkout and the release given to the app's user.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use super::events::{self, Events, StepError};
use super::{artifacts, checkout, fetch, git, packages, resolve, short, venv, Prepared};
use crate::deployment::Deployment;
use crate::identity::Identity;
use crate::spec::{Spec, Strategy};
use crate::store::{self, ReleaseRecord};
use crate::supervisor::{NodeServices, Supervisor};

/// Prepares release `number` of `d`: its checkout, venv and artifacts, owned by `d`'s
/// user, and its private ports. Each step gets what it uses: the node's services and who
/// the deployment's processes run as, found once here.
pub(super) async fn prepare(
    sup: &Supervisor,
    d: &Deployment,
    spec: &Spec,
    number: u32,
    events: &Events,
) -> Result<Prepared, StepError> {
    let node = sup.node();
    // Set by the preflight: checkouts are given to it, `file://` artifacts read as it.
    let identity = sup.identity_of(d);
    let source = resolve::resolve(node, spec, events).await?;
    let dir = node.layout().release(&spec.name, number);
    let built = match build(node, identity.clone(), spec, number, &source, &dir, events).await {
        Ok((commit, venv, stored)) => {
            complete(node, identity.as_ref(), spec, &dir, &commit, stored, events)
                .await
                .map(|linked| (commit, venv, linked))
        }
        Err(e) => Err(e),
    };
    let (commit, venv, linked) = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
    };
    let lease = venv.as_ref().map(|v| sup.venvs().lease(&v.key));
    let ports = match spec.strategy {
        // An autoscaled deployment keeps the count it runs (a deploy under load keeps its
        // capacity).
        Strategy::Switch => Some(private_ports(
            sup,
            spec.start_count(d.running_count()) as usize,
        )?),
        Strategy::Recreate => None,
    };
    let all = ports.as_ref().map(|l| l.ports.clone()).unwrap_or_default();
    let private_port = all.first().copied();
    let replica_ports = all.iter().skip(1).copied().collect();
    let live_event = format!(
        "release {number} deployed ({} {})",
        source.resolved.display,
        short(&commit)
    );
    // The record keeps the hash each artifact had (an unpinned one's too).
    let mut recorded = spec.clone();
    for (a, hash) in recorded.artifacts.iter_mut().zip(&linked.hashes) {
        a.sha256 = Some(hash.clone());
    }
    Ok(Prepared {
        release: ReleaseRecord {
            number,
            spec: recorded,
            git_ref: source.resolved.display.clone(),
            commit,
            packages_hash: venv.as_ref().map(|v| v.key.clone()).unwrap_or_default(),
            venv_dir: venv.as_ref().map(|v| v.dir.clone()),
            deployed_at: crate::clock::now_unix(),
            result: store::ReleaseResult::Pending,
            switched_at: None,
            previous_drained_ms: None,
        },
        dir,
        frozen: venv.map(|v| v.frozen).unwrap_or_default(),
        private_port,
        replica_ports,
        _lease: lease,
        _artifacts: linked.leases,
        _ports: ports,
        live_event,
    })
}

type Built = (String, Option<venv::Venv>, Option<artifacts::Stored>);

/// The code, the venv and the artifacts in the store, each as early as it can start.
async fn build(
    node: &NodeServices,
    identity: Option<Identity>,
    spec: &Spec,
    number: u32,
    source: &resolve::Source,
    dir: &Path,
    events: &Events,
) -> Result<Built, StepError> {
    let code = fetch_and_checkout(node, spec, number, source, dir, events);
    let arts = artifacts::fetch(node, identity, spec, events);
    let busy = Busy {
        packages: spec.has_packages() || !spec.apt.is_empty(),
        artifacts: !spec.artifacts.is_empty(),
    };
    if spec.has_packages() && !packages::venv_needs_checkout(spec) {
        let venvs = node.layout().venvs();
        let venv = packages::prepare_venv(node, spec, dir, &venvs, events);
        let env = together(venv, arts, busy, events);
        return match packages::at_once(code, env).await {
            Ok((commit, (venv, stored))) => Ok((commit, venv, stored)),
            Err((e, Some(cancelled))) => {
                let stopped = format!("stopped: the deploy failed at {cancelled}");
                events.info(events::PACKAGES, stopped.clone());
                if busy.artifacts {
                    events.info(events::ARTIFACTS, stopped);
                }
                Err(e)
            }
            Err((e, None)) => Err(e),
        };
    }
    // The venv needs the checkout: the artifacts go on while the code is fetched, and
    // beside the packages after it.
    tokio::pin!(arts);
    let mut early = None;
    let commit = beside(code, arts.as_mut(), &mut early).await?;
    let stored = async move {
        match early {
            Some(r) => r,
            None => arts.await,
        }
    };
    let workdir = dir.join(&spec.workdir);
    let venv = packages::prepare_venv(node, spec, dir, &workdir, events);
    let (venv, stored) = together(venv, stored, busy, events).await?;
    Ok((commit, venv, stored))
}

/// The artifacts linked into the checkout, then the release given to the app's user.
async fn complete(
    node: &NodeServices,
    identity: Option<&Identity>,
    spec: &Spec,
    dir: &Path,
    commit: &str,
    stored: Option<artifacts::Stored>,
    events: &Events,
) -> Result<artifacts::Linked, StepError> {
    let linked = match stored {
        Some(s) => artifacts::link(node, spec, dir, commit, s, events).await?,
        None => artifacts::Linked::default(),
    };
    checkout::give_to_app(identity, dir, &linked.trees).await?;
    Ok(linked)
}

/// Runs `main` to its end while `side` makes progress; `side`'s result lands in `slot`
/// if it ends first.
async fn beside<M: Future, S: Future>(
    main: M,
    mut side: Pin<&mut S>,
    slot: &mut Option<S::Output>,
) -> M::Output {
    tokio::pin!(main);
    loop {
        tokio::select! {
            r = &mut main => return r,
            r = side.as_mut(), if slot.is_none() => *slot = Some(r),
        }
    }
}

/// Which of the steps that run together have work (and so say when they are stopped).
#[derive(Clone, Copy)]
struct Busy {
    packages: bool,
    artifacts: bool,
}

/// The packages step and the artifacts at the same time: the first failure stops the
/// other (both are safe to stop: an unfinished venv or download is never used) and is the
/// one reported.
async fn together<V, A>(
    venv: impl Future<Output = Result<V, StepError>>,
    arts: impl Future<Output = Result<A, StepError>>,
    busy: Busy,
    events: &Events,
) -> Result<(V, A), StepError> {
    tokio::pin!(venv, arts);
    let (mut v, mut a) = (None, None);
    loop {
        tokio::select! {
            r = &mut venv, if v.is_none() => match r {
                Ok(x) => v = Some(x),
                Err(e) => {
                    if a.is_none() && busy.artifacts {
                        events.info(events::ARTIFACTS, format!("stopped: the deploy failed at {}", e.step));
                    }
                    return Err(e);
                }
            },
            r = &mut arts, if a.is_none() => match r {
                Ok(x) => a = Some(x),
                Err(e) => {
                    if v.is_none() && busy.packages {
                        events.info(events::PACKAGES, format!("stopped: the deploy failed at {}", e.step));
                    }
                    return Err(e);
                }
            },
        }
        if v.is_some() && a.is_some() {
            break;
        }
    }
    match (v, a) {
        (Some(v), Some(a)) => Ok((v, a)),
        _ => Err(StepError::new(
            events::PACKAGES,
            "internal error: a step did not end",
        )),
    }
}

/// `n` free private ports for a release's instances, that no running instance and no other
/// deploy in progress has.
pub(crate) fn private_ports(
    sup: &Supervisor,
    n: usize,
) -> Result<crate::reservations::PortLease, StepError> {
    let ip = sup.app_host().private_ip();
    let in_use = sup
        .registry()
        .all()
        .iter()
        .flat_map(|d| d.private_ports())
        .collect();
    sup.port_reservations()
        .reserve(ip, n, &in_use)
        .map_err(|e| StepError::new(events::START, format!("no free port on {ip}: {e}")))
}

/// fetch → checkout into `dir` (one at a time per mirror) → the checkout's paths. The commit.
async fn fetch_and_checkout(
    node: &NodeServices,
    spec: &Spec,
    number: u32,
    source: &resolve::Source,
    dir: &Path,
    events: &Events,
) -> Result<String, StepError> {
    let mirror = git::mirror_path(&node.layout().git(), &source.mirror_key);
    let lock = node.mirror_lock(&source.mirror_key);
    let guard = lock.lock().await;
    let oid = fetch::fetch(spec, source, &mirror, events).await?;
    checkout::checkout(spec, number, source, &mirror, oid, dir, events).await?;
    drop(guard);
    let commit = oid.to_string();
    checkout::check(spec, dir, &commit, events).await?;
    Ok(commit)
}
