//! The deploy pipeline, top to bottom:
//! port → resolve → fetch → checkout → packages → start script → start → health,
//! and, when the new release fails to start, the previous one is kept (started again if it
//! had been stopped for the port). "Rollback" is the user's `deployctl rollback`, not this.
//!
//! The previous release keeps serving until the new one is prepared; it is stopped just
//! before the new one starts only when both need the same port.

mod beneath;
mod bytecode;
pub mod events;
pub mod git;
pub mod git_auth;
pub mod packages;
mod port_wait;
pub mod start_script;
pub mod toolchain;
pub(crate) mod venv_gc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use events::{Events, Outcome, StepError};

use crate::instance::{Instance, InstanceConfig};
use crate::ports;
use crate::process::Launch;
use crate::procstat::ProcId;
use crate::spec::Spec;
use crate::store::{self, ReleaseRecord};
use crate::supervisor::{Deployment, Supervisor};

/// What the preparing steps produced for the new release.
struct Prepared {
    release: ReleaseRecord,
    dir: PathBuf,
    /// The exact versions in its environment.
    frozen: Vec<String>,
    /// Keeps its environment from garbage collection until the deploy is over.
    _lease: Option<crate::supervisor::VenvLease>,
}

/// Deploys `spec`; always ends with an outcome (also sent as the last event).
pub async fn deploy(sup: Arc<Supervisor>, spec: Spec, events: Events) -> Outcome {
    let started = Instant::now();
    let d = sup.get_or_create(&spec.name);
    let _op = d.op.lock().await;
    if d.lock().removed {
        // Removed while we waited: start over with a fresh entry.
        drop(_op);
        return Box::pin(deploy(sup, spec, events)).await;
    }
    if d.lock().record.releases.is_empty() {
        // What an older agent left under this name (a directory without a record) is not
        // this deployment's: its logs must not show up in the new owner's.
        let (layout, name) = (sup.layout.clone(), spec.name.clone());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store::delete(&layout, &name)).await
        {
            tracing::warn!(deployment = %spec.name, error = %e, "cannot delete a leftover directory");
        }
    }
    // Opened under the deployment's lock: a failed first deploy of the same name that
    // finishes while this one waits deletes the directory this log lives in.
    events.open_log(sup.layout.deploy_log(&spec.name)).await;
    let number = {
        let mut inner = d.lock();
        let n = inner.record.next_release();
        inner.deploying = Some(n);
        inner.deploying_owner = Some(spec.owner.clone());
        n
    };
    let mut outcome = match run(&sup, &d, &spec, number, &events).await {
        Ok(o) => o,
        Err((err, prepared)) => fail(&sup, &d, &spec, number, err, prepared).await,
    };
    {
        let mut inner = d.lock();
        inner.deploying = None;
        inner.deploying_owner = None;
    }
    if outcome.release == 0 {
        // A first deploy that failed leaves nothing behind; the client has the reason.
        sup.discard_unreleased(&d).await;
    }
    outcome.total = started.elapsed();
    outcome.owner = spec.owner.clone();
    events.finish(outcome.clone());
    if outcome.ok {
        // After the client has its answer (still under the deployment's lock): old release
        // directories and environments no release uses any more.
        let record = d.lock().record.clone();
        if let Some(hash) = record
            .current_release()
            .map(|r| r.packages_hash.clone())
            .filter(|h| !h.is_empty())
        {
            bytecode::compile_later(sup.layout.venvs().join(hash));
        }
        prune_releases(&sup, &record).await;
        let s = sup.clone();
        let _ = tokio::task::spawn_blocking(move || s.collect_venv_garbage()).await;
    }
    outcome
}

type Failure = (StepError, Option<Prepared>);

async fn run(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    spec: &Spec,
    number: u32,
    events: &Events,
) -> Result<Outcome, Failure> {
    check_secrets(sup, spec, events).map_err(|e| (e, None))?;
    if spec.has_packages() {
        // Finding python3 and uv (processes; once per agent run) overlaps resolve and fetch.
        let s = sup.clone();
        tokio::spawn(async move {
            s.toolchain().await;
        });
    }
    check_port(sup, d, spec).map_err(|e| (e, None))?;
    let prepared = prepare(sup, spec, number, events)
        .await
        .map_err(|e| (e, None))?;
    let prepared = match run_start_script(sup, spec, &prepared, events).await {
        Ok(()) => prepared,
        Err(e) => return Err((e, Some(prepared))),
    };
    start_and_check(sup, d, spec, prepared, events).await
}

/// Every secret the deployment lists must exist for its owner; from here on their values
/// (and the owner's git credential) are hidden in everything the deploy reports.
fn check_secrets(sup: &Supervisor, spec: &Spec, events: &Events) -> Result<(), StepError> {
    let mut values = match sup.secret_values(&spec.owner, &spec.secrets) {
        Ok(v) => v.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        Err(missing) => {
            return Err(StepError::new(
                events::SECRETS,
                format!(
                    "{} has no secret {}: set it with `deployctl secret set --owner {} NAME`",
                    spec.owner,
                    missing.join(", "),
                    spec.owner
                ),
            ))
        }
    };
    if let Ok(Some((_, v))) = sup.secrets.git_credential(&spec.owner, &spec.repo) {
        values.push(String::from_utf8_lossy(&v).into_owned());
    }
    events.set_redactor(crate::secrets::Redactor::new(values));
    Ok(())
}

/// A port another deployment here holds is refused (named only when it has the same
/// owner: another owner's deployments are not revealed); a foreign process on it is reported.
fn check_port(sup: &Supervisor, d: &Deployment, spec: &Spec) -> Result<(), StepError> {
    if let Some((other, owner)) = sup.port_owner(spec.port, &spec.name) {
        let by = if owner == spec.owner {
            format!(" by {owner}'s deployment {other:?}")
        } else {
            String::new()
        };
        return Err(StepError::new(
            events::PORT,
            format!(
                "port {} is in use on this node{by}; choose another port (--port)",
                spec.port
            ),
        ));
    }
    foreign_port_holder(sup, d, spec)
}

fn foreign_port_holder(sup: &Supervisor, _d: &Deployment, spec: &Spec) -> Result<(), StepError> {
    let host = sup.config.app_host;
    let ours = sup.running_pids();
    // A process of one of our instances (found by its cgroup or marker) is never foreign,
    // even when it left its group or its leader is gone.
    if let Some((listener, pid)) = ports::foreign_holders(host, spec.port, &ours)
        .into_iter()
        .find(|(_, pid)| !pid.is_some_and(|p| sup.tracker.owner_of(p).is_some()))
    {
        let who = match pid {
            Some(pid) => ports::describe_process(pid),
            None => "a process this agent cannot see (another user's)".to_string(),
        };
        return Err(StepError::new(
            events::PORT,
            format!(
                "port {} on {} is in use by {who}, which deploy-agent does not manage (listening on {}:{}); stop it or choose another port (--port)",
                spec.port, host, listener.addr, listener.port
            ),
        ));
    }
    Ok(())
}

/// resolve → fetch → checkout → packages.
async fn prepare(
    sup: &Arc<Supervisor>,
    spec: &Spec,
    number: u32,
    events: &Events,
) -> Result<Prepared, StepError> {
    let url = spec.repo.clone();
    let wanted = spec.git_ref.clone();
    // The owner's git credential, if the URL needs one; a mirror per owner then, so one
    // owner's credential never serves another's fetch.
    let credential = sup
        .secrets
        .git_credential(&spec.owner, &spec.repo)
        .map_err(|e| StepError::new(events::RESOLVE, e.to_string()))?;
    let mirror_key = match &credential {
        Some(_) => format!("{}#{}", spec.repo, spec.owner),
        None => spec.repo.clone(),
    };
    let auth = git_auth::GitAuth {
        credential,
        known_hosts: sup.layout.root.join("known_hosts"),
        refusal: Default::default(),
    };
    let what = format!(
        "{} at {}",
        url,
        wanted.as_deref().unwrap_or("the remote HEAD")
    );
    let resolved = events
        .step(events::RESOLVE, what, async {
            let a = auth.clone();
            let r = blocking(events::RESOLVE, move || {
                git::resolve(&url, wanted.as_deref(), &a)
            })
            .await?;
            let msg = match r.commit {
                Some(oid) => format!("{} is {}", r.display, short(&oid.to_string())),
                None => format!("{} will be looked up after fetching", r.display),
            };
            Ok((r, msg))
        })
        .await?;

    let dir = sup.layout.release(&spec.name, number);
    let from = Source {
        resolved: &resolved,
        auth: &auth,
        mirror_key: &mirror_key,
    };
    let git = fetch_and_checkout(sup, spec, number, from, &dir, events);
    let result = if spec.has_packages() && !venv_needs_checkout(spec) {
        // Packages that do not depend on the checkout are installed while it is fetched.
        let envs = sup.layout.venvs();
        let env = prepare_venv(sup, spec, &dir, &envs, events);
        match at_once(git, env).await {
            Ok(both) => Ok(both),
            Err((e, Some(cancelled))) => {
                events.info(
                    events::PACKAGES,
                    format!("stopped: the deploy failed at {}", cancelled),
                );
                Err(e)
            }
            Err((e, None)) => Err(e),
        }
    } else {
        match git.await {
            Ok(commit) => {
                let workdir = dir.join(&spec.workdir);
                prepare_venv(sup, spec, &dir, &workdir, events)
                    .await
                    .map(|env| (commit, env))
            }
            Err(e) => Err(e),
        }
    };
    let (commit, env) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
    };
    let lease = env.as_ref().map(|e| sup.lease_venv(&e.key));
    Ok(Prepared {
        release: ReleaseRecord {
            number,
            spec: spec.clone(),
            git_ref: resolved.display.clone(),
            commit,
            packages_hash: env.as_ref().map(|e| e.key.clone()).unwrap_or_default(),
            venv_dir: env.as_ref().map(|e| e.dir.clone()),
            deployed_at: store::now_unix(),
            result: store::ReleaseResult::Pending,
        },
        dir,
        frozen: env.map(|e| e.frozen).unwrap_or_default(),
        _lease: lease,
    })
}

/// Where a release's code comes from: the resolved commit, the credentials, and the
/// mirror (one per URL, or per URL and owner when the owner has a git credential).
#[derive(Clone, Copy)]
struct Source<'a> {
    resolved: &'a git::Resolved,
    auth: &'a git_auth::GitAuth,
    mirror_key: &'a str,
}

/// fetch → checkout into `dir` → the paths the spec names exist there. Returns the commit.
async fn fetch_and_checkout(
    sup: &Arc<Supervisor>,
    spec: &Spec,
    number: u32,
    from: Source<'_>,
    dir: &Path,
    events: &Events,
) -> Result<String, StepError> {
    let Source {
        resolved,
        auth,
        mirror_key,
    } = from;
    let mirror = git::mirror_path(&sup.layout.git(), mirror_key);
    let repo_lock = sup.repo_locks.get(mirror_key);
    let _repo_guard = repo_lock.lock().await;
    let oid = events
        .step(
            events::FETCH,
            format!("into the mirror {}", mirror.display()),
            async {
                let (m, u, r, a) = (
                    mirror.clone(),
                    spec.repo.clone(),
                    resolved.clone(),
                    auth.clone(),
                );
                let (oid, how) =
                    blocking(events::FETCH, move || git::fetch(&m, &u, &r, &a)).await?;
                let c = short(&oid.to_string()).to_string();
                let msg = match how {
                    git::Fetched::Present => format!("already have {c}, nothing to fetch"),
                    git::Fetched::Fetched => format!("fetched {c}"),
                    git::Fetched::Recloned => {
                        format!("the mirror was unreadable: cloned it again, {c}")
                    }
                };
                Ok((oid, msg))
            },
        )
        .await?;

    let commit = oid.to_string();
    events
        .step(
            events::CHECKOUT,
            format!("{} into release {number}", short(&commit)),
            async {
                let (m, target) = (mirror.clone(), dir.to_path_buf());
                let _ = tokio::fs::remove_dir_all(&target).await;
                let (url, resolved, a) = (spec.repo.clone(), resolved.clone(), auth.clone());
                blocking(events::CHECKOUT, move || {
                    git::checkout(&m, oid, &target).or_else(|e| {
                        // Objects missing from the mirror: clone it again, once.
                        tracing::warn!(reason = %e.reason, "checkout failed; cloning the mirror again");
                        git::discard_mirror(&m);
                        let _ = std::fs::remove_dir_all(&target);
                        git::fetch(&m, &url, &resolved, &a)?;
                        git::checkout(&m, oid, &target)
                    })
                })
                .await?;
                let summary = {
                    let m = mirror.clone();
                    tokio::task::spawn_blocking(move || git::commit_summary(&m, oid))
                        .await
                        .unwrap_or_default()
                };
                Ok(((), format!("{} {summary}", short(&commit))))
            },
        )
        .await?;
    drop(_repo_guard);

    if let Err(e) = check_paths(spec, dir, &commit).await {
        events.emit(
            e.step,
            events::Phase::Failed,
            e.reason.clone(),
            Default::default(),
        );
        return Err(e);
    }
    if let Some((uid, gid)) = sup.run_as {
        // The app (and its start script) run as run_as and may write in their checkout.
        let d = dir.to_path_buf();
        let owned =
            tokio::task::spawn_blocking(move || crate::process::chown_tree(&d, uid, gid)).await;
        if let Ok(Err(e)) | Err(e) = owned.map_err(std::io::Error::other) {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(StepError::new(
                events::CHECKOUT,
                format!("cannot give {} to uid {uid}: {e}", dir.display()),
            ));
        }
    }
    Ok(commit)
}

/// Whether the environment depends on the checkout: a requirements file (read from it), or
/// packages named by a path or a file URL (a path may be relative to the workdir).
fn venv_needs_checkout(spec: &Spec) -> bool {
    let local = |p: &String| {
        // `name @ target` names a direct reference.
        let target = p.rsplit(" @ ").next().unwrap_or(p).trim();
        target.starts_with(['.', '/', '~'])
            || target.starts_with("file:")
            // An archive named by a path, not a URL.
            || (!target.contains("://")
                && [".whl", ".tar.gz", ".zip"].iter().any(|x| target.ends_with(x)))
    };
    if !spec.pinned.is_empty() {
        // Exactly the pinned list is installed, whatever the requirements file says.
        return spec.pinned.iter().any(local);
    }
    spec.requirements.is_some() || spec.pip.iter().any(local)
}

/// Runs `git` (fetch and checkout) and `env` (packages) at the same time. A failure of `git`
/// cancels `env` (its installer is killed; an unfinished environment is never used) and
/// comes back with the step it failed at; a failure of `env` waits for `git` (it holds the
/// mirror) and, if `git` failed too, the earlier step's failure is the one reported.
async fn at_once<E>(
    git: impl std::future::Future<Output = Result<String, StepError>>,
    env: impl std::future::Future<Output = Result<E, StepError>>,
) -> Result<(String, E), (StepError, Option<&'static str>)> {
    tokio::pin!(git, env);
    let mut venv_result = None;
    let commit = loop {
        tokio::select! {
            r = &mut git => match r {
                Ok(commit) => break commit,
                Err(e) => {
                    let step = e.step;
                    return Err((e, venv_result.is_none().then_some(step)));
                }
            },
            r = &mut env, if venv_result.is_none() => venv_result = Some(r),
        }
    };
    let env = match venv_result {
        Some(r) => r,
        None => env.await,
    };
    env.map(|e| (commit, e)).map_err(|e| (e, None))
}

/// The workdir, requirements file (and what it includes) and start script must exist in
/// the checkout and resolve beneath it ([`beneath`]: a symlink out of the checkout is
/// refused, naming where it points).
async fn check_paths(spec: &Spec, dir: &Path, commit: &str) -> Result<(), StepError> {
    let (spec, dir, commit) = (spec.clone(), dir.to_path_buf(), commit.to_string());
    blocking(events::CHECKOUT, move || {
        check_paths_blocking(&spec, &dir, &commit)
    })
    .await
}

fn check_paths_blocking(spec: &Spec, dir: &Path, commit: &str) -> Result<(), StepError> {
    let at = format!("at commit {}", short(commit));
    let refused = |field: &str, why: beneath::Refusal| {
        StepError::new(events::CHECKOUT, format!("{field}: {why} {at}"))
    };
    let workdir = beneath::resolve(dir, dir, &spec.workdir).map_err(|e| refused("workdir", e))?;
    if !workdir.is_dir() {
        return Err(StepError::new(
            events::CHECKOUT,
            format!(
                "workdir: {:?} is not a directory in the repository {at}",
                spec.workdir
            ),
        ));
    }
    for (field, path) in [
        ("requirements", &spec.requirements),
        ("start_script", &spec.start_script),
    ] {
        let Some(p) = path else {
            continue;
        };
        let real = beneath::resolve(dir, &workdir, p).map_err(|e| refused(field, e))?;
        if !real.is_file() {
            return Err(StepError::new(
                events::CHECKOUT,
                format!(
                    "{field}: {:?} is not a file in the workdir {:?} {at}",
                    p, spec.workdir
                ),
            ));
        }
        if field == "requirements" {
            beneath::check_requirements(dir, &real).map_err(|e| refused(field, e))?;
        }
    }
    Ok(())
}

/// The packages step. `dir` is the release directory; the installer runs in `cwd` (the
/// workdir, or anywhere when the environment does not depend on the checkout).
async fn prepare_venv(
    sup: &Arc<Supervisor>,
    spec: &Spec,
    dir: &Path,
    cwd: &Path,
    events: &Events,
) -> Result<Option<packages::Venv>, StepError> {
    if !spec.has_packages() {
        events.skipped(
            events::PACKAGES,
            "no packages or requirements declared; using the node's python3",
        );
        return Ok(None);
    }
    let workdir = dir.join(&spec.workdir);
    let pinned = !spec.pinned.is_empty();
    let requirements = match spec.requirements.as_ref().filter(|_| !pinned) {
        Some(p) => Some((
            p.as_path(),
            tokio::fs::read_to_string(workdir.join(p))
                .await
                .map_err(|e| {
                    StepError::new(
                        events::PACKAGES,
                        format!("requirements: cannot read {}: {e}", p.display()),
                    )
                })?,
        )),
        None => None,
    };
    let local = requirements
        .as_ref()
        .is_some_and(|(_, c)| packages::refers_to_files(c));
    let req = packages::VenvRequest {
        pip: if pinned { &[] } else { &spec.pip },
        requirements: if pinned { None } else { requirements },
        release_dir: local.then_some(dir),
        pinned: &spec.pinned,
    };
    let toolchain = sup.toolchain().await.clone();
    let key = packages::venv_key(&toolchain, &req);
    if let Some(w) = &toolchain.warning {
        events.info(events::PACKAGES, w.clone());
    }
    let installer = if pinned {
        format!(
            "{} (pinned: {} exact versions)",
            toolchain.origin,
            spec.pinned.len()
        )
    } else {
        toolchain.origin.clone()
    };
    let lock = sup.venv_locks.get(&key);
    events
        .step(
            events::PACKAGES,
            format!("environment {key} with {installer}"),
            async {
                let _guard = lock.lock().await;
                let (env, built) = packages::build(
                    &toolchain,
                    &sup.layout.venvs(),
                    &key,
                    &req,
                    cwd,
                    sup.config.install_timeout,
                    events,
                )
                .await?;
                let msg = if built {
                    format!("built environment {key}")
                } else {
                    format!("reused environment {key} (nothing to install)")
                };
                Ok((Some(env), msg))
            },
        )
        .await
}

async fn run_start_script(
    sup: &Arc<Supervisor>,
    spec: &Spec,
    prepared: &Prepared,
    events: &Events,
) -> Result<(), StepError> {
    let Some(script) = &spec.start_script else {
        events.skipped(events::START_SCRIPT, "no start script declared");
        return Ok(());
    };
    let launch = launch_for(sup, &prepared.release, &prepared.dir);
    events
        .step(
            events::START_SCRIPT,
            format!("sh {}", script.display()),
            async {
                start_script::run(script, &launch, sup.config.start_script_timeout, events).await?;
                Ok(((), format!("{} finished", script.display())))
            },
        )
        .await
}

/// Everything an app (or its start script) gets: directory, variables, PATH.
pub fn launch_for(sup: &Supervisor, release: &ReleaseRecord, dir: &Path) -> Launch {
    let spec = &release.spec;
    let mut env: Vec<(String, String)> = vec![
        ("PORT".into(), spec.port.to_string()),
        ("HOST".into(), sup.config.app_host.to_string()),
        ("DEPLOYMENT_NAME".into(), spec.name.clone()),
        ("DEPLOYMENT_RELEASE".into(), release.number.to_string()),
        ("GIT_COMMIT".into(), release.commit.clone()),
    ];
    if let Some(venv_dir) = &release.venv_dir {
        env.push((
            "VIRTUAL_ENV".into(),
            venv_dir.to_string_lossy().into_owned(),
        ));
    }
    env.extend(spec.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Secret values are read from the store at each start, never kept in the record.
    match sup.secret_values(&spec.owner, &spec.secrets) {
        Ok(values) => env.extend(values),
        Err(missing) => {
            tracing::warn!(deployment = %spec.name, missing = ?missing, "secrets are missing; the app starts without them")
        }
    }
    Launch {
        command: spec.command.clone(),
        cwd: dir.join(&spec.workdir),
        env,
        path_prefix: release.venv_dir.as_ref().map(|d| d.join("bin")),
        run_as: sup.run_as,
    }
}

pub fn instance_config(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
) -> InstanceConfig {
    let spec = &release.spec;
    let dir = sup.layout.release(&spec.name, release.number);
    InstanceConfig {
        name: spec.name.clone(),
        release: release.number,
        launch: launch_for(sup, release, &dir),
        log: sup.layout.app_log(&spec.name),
        host: sup.config.app_host,
        port: spec.port,
        health: spec.health.clone(),
        restart: spec.restart,
        kill_timeout: spec.kill_timeout,
        observer: sup.observer(d),
        tracker: sup.tracker.clone(),
    }
}

/// start → health: stops the previous release first when it holds the same port.
async fn start_and_check(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    spec: &Spec,
    prepared: Prepared,
    events: &Events,
) -> Result<Outcome, Failure> {
    let logs = sup.layout.logs(&spec.name);
    let made = {
        let logs = logs.clone();
        tokio::task::spawn_blocking(move || {
            crate::fsmode::create_dir(&logs, crate::fsmode::PRIVATE_DIR)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
    };
    if let Err(e) = made {
        let err = StepError::new(
            events::START,
            format!("cannot create {}: {e}", logs.display()),
        );
        return Err((err, Some(prepared)));
    }
    let previous = d.lock().instance.clone();
    let same_port = {
        let inner = d.lock();
        inner.record.current_release().map(|r| r.spec.port) == Some(spec.port)
    };
    if let Some(prev) = previous.as_ref().filter(|_| same_port) {
        // The new release may start once the old one no longer listens on the port; it
        // finishes exiting (SIGKILL after its kill timeout) in the background.
        let stopping = Instant::now();
        let (pid, how) = prev.stop_freeing_port().await;
        let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let ms = stopping.elapsed().as_millis();
        events.info(
            events::START,
            match how {
                crate::process::Stopped::Exiting => format!(
                    "stopped release {} (pid {pid}): port {} free after {ms} ms, the app is still exiting",
                    prev.release, spec.port
                ),
                how => format!(
                    "stopped release {} (pid {pid}, {}) to free port {} in {ms} ms",
                    prev.release,
                    how.as_str(),
                    spec.port
                ),
            },
        );
        d.lock().instance = None;
    }
    // An app left running by an earlier run of the agent is stopped the same way.
    let orphan = {
        let inner = d.lock();
        inner
            .record
            .process()
            .filter(|_| previous.is_none())
            .map(|(id, _)| (id, inner.record.tracking.clone()))
    };
    if let Some((id, tracking)) = orphan.filter(|(id, _)| id.is_running()) {
        let how = crate::supervisor::stop_recorded(id, tracking, spec.kill_timeout).await;
        events.info(
            events::START,
            format!(
                "stopped the app left by an earlier agent run (pid {}, {})",
                id.pid,
                how.as_str()
            ),
        );
    }
    // The previous release may hold the port a little longer than its main process lives
    // (threads that outlive it): wait for it, up to its kill timeout.
    let grace = previous
        .as_ref()
        .and_then(|_| {
            d.lock()
                .record
                .current_release()
                .map(|r| r.spec.kill_timeout)
        })
        .unwrap_or(spec.kill_timeout);
    if let Err(e) = port_wait::own_holders_gone(sup, spec, grace, events).await {
        return Err((e, Some(prepared)));
    }
    // A foreign process may have taken the port while we were preparing.
    if let Err(e) = foreign_port_holder(sup, d, spec) {
        return Err((e, Some(prepared)));
    }

    let cfg = instance_config(sup, d, &prepared.release);
    let started = Instant::now();
    events.emit(
        events::START,
        events::Phase::Started,
        format!("sh -c {:?}", spec.command),
        Default::default(),
    );
    let (instance, ready) = Instance::start(cfg);
    let instance = Arc::new(instance);
    d.lock().instance = Some(instance.clone());
    let pid = instance.snapshot().pid;
    events.emit(
        events::START,
        events::Phase::Done,
        match pid {
            Some(pid) => format!("pid {pid}"),
            None => "started".to_string(),
        },
        started.elapsed(),
    );

    let target = match &spec.health.path {
        Some(p) => format!("GET {}{p}", sup.app_url(spec.port)),
        None => format!("TCP connect to {}:{}", sup.config.app_host, spec.port),
    };
    let health_started = Instant::now();
    events.emit(
        events::HEALTH,
        events::Phase::Started,
        format!(
            "{target} (up to {})",
            humantime::format_duration(spec.health.timeout)
        ),
        Default::default(),
    );
    let result = ready.await.unwrap_or_else(|_| {
        Err(crate::instance::StartFailure {
            reason: "the app's supervisor ended unexpectedly".into(),
            tail: vec![],
        })
    });
    match result {
        Ok(pid) => {
            let last = instance.snapshot().last_health;
            events.emit(
                events::HEALTH,
                events::Phase::Done,
                last,
                health_started.elapsed(),
            );
            // The previous release (on another port) is no longer needed.
            if let Some(prev) = previous.filter(|_| !same_port) {
                prev.stop().await;
            }
            let mut release = prepared.release;
            release.result = store::ReleaseResult::Ok;
            let outcome = Outcome {
                ok: true,
                release: release.number,
                commit: release.commit.clone(),
                git_ref: release.git_ref.clone(),
                url: sup.app_url(spec.port),
                packages_hash: release.packages_hash.clone(),
                frozen: prepared.frozen.clone(),
                ..Default::default()
            };
            {
                let tracking = instance.snapshot().tracking;
                let mut inner = d.lock();
                inner.record.current = Some(release.number);
                inner
                    .record
                    .set_process(release.number, ProcId::of(pid), tracking);
                inner.record.releases.push(release);
            }
            d.save_or_log(&sup.layout);
            Ok(outcome)
        }
        Err(failure) => {
            events.emit(
                events::HEALTH,
                events::Phase::Failed,
                failure.reason.clone(),
                health_started.elapsed(),
            );
            d.lock().instance = None;
            // Put the previous instance back if it is still running (other port).
            if let Some(prev) = previous.filter(|_| !same_port) {
                d.lock().instance = Some(prev);
            }
            Err((
                StepError::new(events::HEALTH, failure.reason).with_tail(failure.tail),
                Some(prepared),
            ))
        }
    }
}

/// Records the failed release, deletes its directory, and makes sure the previous release
/// serves again (restarting it if it was stopped for the port).
async fn fail(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    _spec: &Spec,
    _number: u32,
    err: StepError,
    prepared: Option<Prepared>,
) -> Outcome {
    let mut outcome = Outcome {
        ok: false,
        failed_step: err.step.to_string(),
        reason: err.reason.clone(),
        output_tail: err.tail.clone(),
        ..Default::default()
    };
    if let Some(p) = prepared {
        let mut release = p.release;
        release.result = store::ReleaseResult::failed(err.step, first_line(&err.reason));
        outcome.commit = release.commit.clone();
        outcome.git_ref = release.git_ref.clone();
        let _ = tokio::fs::remove_dir_all(&p.dir).await;
        // Only a deployment that has a release worth keeping gets history recorded.
        let mut inner = d.lock();
        if inner.record.current.is_some() {
            inner.record.releases.push(release);
        }
    }
    let (current, running) = {
        let inner = d.lock();
        (
            inner.record.current_release().cloned(),
            inner.instance.clone(),
        )
    };
    if let Some(cur) = current {
        outcome.release = cur.number;
        outcome.kept_release = cur.number;
        match running {
            Some(inst) => {
                outcome.kept_healthy = inst.snapshot().state == crate::instance::State::Healthy;
            }
            None => {
                // Stopped for the port (or never running): started again, a new process.
                let pid = restart_kept(sup, d, &cur).await;
                outcome.kept_healthy = pid.is_some();
                outcome.kept_restarted = true;
                outcome.kept_pid = pid.unwrap_or(0);
            }
        }
        d.save_or_log(&sup.layout);
    }
    outcome
}

/// Starts a previous release again and waits for it to be healthy: its new pid.
async fn restart_kept(
    sup: &Arc<Supervisor>,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
) -> Option<u32> {
    let (instance, ready) = Instance::start(instance_config(sup, d, release));
    let instance = Arc::new(instance);
    d.lock().instance = Some(instance.clone());
    match ready.await {
        Ok(Ok(pid)) => {
            let tracking = instance.snapshot().tracking;
            d.lock()
                .record
                .set_process(release.number, ProcId::of(pid), tracking);
            Some(pid)
        }
        Ok(Err(f)) => {
            tracing::error!(deployment = %release.spec.name, reason = %f.reason, "previous release did not come back");
            None
        }
        Err(_) => None,
    }
}

/// Deletes release directories beyond the newest `keep_releases` good ones.
async fn prune_releases(sup: &Supervisor, record: &store::Record) {
    let keep: Vec<u32> = record
        .releases
        .iter()
        .rev()
        .filter(|r| r.result.is_ok())
        .take(sup.config.keep_releases.max(1))
        .map(|r| r.number)
        .collect();
    let dir = sup.layout.deployment(&record.name).join("releases");
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
        return;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let n = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok());
        if n.is_some_and(|n| !keep.contains(&n)) {
            let _ = tokio::fs::remove_dir_all(e.path()).await;
        }
    }
}

async fn blocking<T: Send + 'static>(
    step: &'static str,
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::new(step, format!("internal error: {e}")))?
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RawSpec;

    fn spec(pip: &[&str], requirements: &str, pinned: &[&str]) -> Spec {
        Spec::validate(RawSpec {
            name: "app".into(),
            repo: "https://example.org/app.git".into(),
            command: "python3 app.py".into(),
            pip: pip.iter().map(|s| s.to_string()).collect(),
            requirements: requirements.into(),
            pinned: pinned.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn environments_that_need_the_checkout() {
        assert!(!venv_needs_checkout(&spec(
            &["fastapi==0.115.0", "uvicorn"],
            "",
            &[]
        )));
        assert!(!venv_needs_checkout(&spec(
            &["pkg @ https://example.org/pkg-1.0-py3-none-any.whl"],
            "",
            &[]
        )));
        assert!(venv_needs_checkout(&spec(
            &["six"],
            "requirements.txt",
            &[]
        )));
        assert!(venv_needs_checkout(&spec(&["./vendor/pkg"], "", &[])));
        assert!(venv_needs_checkout(&spec(
            &["dist/pkg-1.0.tar.gz"],
            "",
            &[]
        )));
        // A pinned deploy installs its list only, whatever the requirements file says.
        assert!(!venv_needs_checkout(&spec(
            &[],
            "requirements.txt",
            &["six==1.16.0"]
        )));
        assert!(venv_needs_checkout(&spec(
            &[],
            "",
            &["app @ file:///srv/app"]
        )));
    }
}
