//! checkout: the fetched commit into the release's directory; then the paths the spec
//! names must exist there and resolve beneath it ([`beneath`]: a symlink out of the
//! checkout is refused, naming where it points); once the release is complete, the app's
//! user gets the files ([`give_to_app`]).

use std::path::Path;

use super::events::{self, Events, StepError};
use super::resolve::Source;
use super::{beneath, blocking, git, short};
use crate::identity::Identity;
use crate::spec::Spec;

/// Checks out `oid` from `mirror` into `dir` (release `number`).
pub(super) async fn checkout(
    spec: &Spec,
    number: u32,
    from: &Source,
    mirror: &Path,
    oid: git2::Oid,
    dir: &Path,
    events: &Events,
) -> Result<(), StepError> {
    let commit = oid.to_string();
    events
        .step(
            events::CHECKOUT,
            format!("{} into release {number}", short(&commit)),
            async {
                let (m, target) = (mirror.to_path_buf(), dir.to_path_buf());
                let _ = tokio::fs::remove_dir_all(&target).await;
                let (url, resolved, auth) =
                    (spec.repo.clone(), from.resolved.clone(), from.auth.clone());
                blocking(events::CHECKOUT, move || {
                    let again = (url.as_str(), &resolved, &auth);
                    checkout_or_reclone(&m, oid, &target, number, again)
                })
                .await?;
                let summary = {
                    let m = mirror.to_path_buf();
                    tokio::task::spawn_blocking(move || git::commit_summary(&m, oid))
                        .await
                        .unwrap_or_default()
                };
                Ok(((), format!("{} {summary}", short(&commit))))
            },
        )
        .await
}

/// Checks `oid` out into `target`. When that fails for want of space, the step fails
/// saying so (naming the directory and its free space); otherwise (objects missing from
/// the mirror) the mirror is cloned again from `url`, once. Blocking.
fn checkout_or_reclone(
    mirror: &Path,
    oid: git2::Oid,
    target: &Path,
    number: u32,
    (url, resolved, auth): (&str, &git::Resolved, &super::git_auth::GitAuth),
) -> Result<(), StepError> {
    let Err(e) = git::checkout(mirror, oid, target) else {
        return Ok(());
    };
    if crate::disk::says_full(&e.reason) {
        // Cloning the mirror again cannot help.
        let what = format!(
            "cannot check out {} into release {number}",
            short(&oid.to_string())
        );
        let full = git::disk_full(events::CHECKOUT, &what, target);
        let _ = std::fs::remove_dir_all(target);
        return Err(full);
    }
    tracing::warn!(reason = %e.reason, "checkout failed; cloning the mirror again");
    git::discard_mirror(mirror);
    let _ = std::fs::remove_dir_all(target);
    git::fetch(mirror, url, resolved, auth)?;
    git::checkout(mirror, oid, target)
}

/// After the checkout: the paths the spec names.
pub(super) async fn check(
    spec: &Spec,
    dir: &Path,
    commit: &str,
    events: &Events,
) -> Result<(), StepError> {
    if let Err(e) = check_paths(spec, dir, commit).await {
        events.emit(
            e.step,
            events::Phase::Failed,
            e.reason.clone(),
            Default::default(),
        );
        return Err(e);
    }
    Ok(())
}

/// Once the release is complete (its artifacts linked): its files given to the app's user.
/// The app (and its start script) may write in their checkout; nobody else may enter it
/// (other deployments' apps included). The store's files its symlinks point to stay the
/// agent's.
pub(super) async fn give_to_app(identity: Option<&Identity>, dir: &Path) -> Result<(), StepError> {
    let Some(id) = identity else {
        return Ok(());
    };
    let (d, uid, gid) = (dir.to_path_buf(), id.uid, id.gid);
    let owned = tokio::task::spawn_blocking(move || {
        crate::process::chown_tree(&d, uid, gid)?;
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
    })
    .await;
    if let Ok(Err(e)) | Err(e) = owned.map_err(std::io::Error::other) {
        return Err(StepError::new(
            events::CHECKOUT,
            format!("cannot give {} to uid {uid}: {e}", dir.display()),
        ));
    }
    Ok(())
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
