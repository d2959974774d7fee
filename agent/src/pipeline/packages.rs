//! packages: the release's Python venv, built once per distinct set of packages (its key)
//! and reused by every release that asks for the same set ([`venv`] builds it). When the
//! packages do not depend on the checkout, the venv is built while the code is fetched.

use std::path::Path;

use super::events::{self, Events, StepError};
use super::venv;
use crate::spec::Spec;
use crate::supervisor::NodeServices;

/// The packages step. `dir` is the release directory; the installer runs in `cwd` (the
/// workdir, or anywhere when the environment does not depend on the checkout).
pub(super) async fn prepare_venv(
    node: &NodeServices,
    spec: &Spec,
    dir: &Path,
    cwd: &Path,
    events: &Events,
) -> Result<Option<venv::Venv>, StepError> {
    // Before the venv: a pip package may build against them.
    super::apt::install(&spec.apt, node.config().install_timeout, events).await?;
    if !spec.has_packages() {
        events.skipped(
            events::PACKAGES,
            if spec.apt.is_empty() {
                "no packages or requirements declared; using the node's python3"
            } else {
                "no Python packages or requirements declared; using the node's python3"
            },
        );
        return Ok(None);
    }
    let pinned = !spec.pinned.is_empty();
    let requirements = read_requirements(spec, dir).await?;
    let local = requirements
        .as_ref()
        .is_some_and(|(_, c)| venv::refers_to_files(c));
    let toolchain = node.venvs().toolchain().await.clone();
    let interpreter = match &spec.python {
        Some(v) => Some(
            crate::venvs::toolchain::find_python(&toolchain, v)
                .await
                .map_err(|e| StepError::new(events::PACKAGES, e))?,
        ),
        None => None,
    };
    let build = super::build_limits::BuildCgroup::create(node, spec, events::PACKAGES)?;
    let build_cgroups = build.as_ref().map(|b| b.dirs()).unwrap_or_default();
    let req = venv::VenvRequest {
        build_cgroups: &build_cgroups,
        python: interpreter.as_ref(),
        pip: if pinned { &[] } else { &spec.pip },
        requirements: if pinned { None } else { requirements },
        release_dir: local.then_some(dir),
        pinned: &spec.pinned,
    };
    let key = venv::venv_key(&toolchain, &req);
    if let Some(w) = &toolchain.warning {
        events.info(events::PACKAGES, w.clone());
    }
    let installer = installer_words(&toolchain, spec, interpreter.as_ref());
    let lock = node.venvs().builder(&key);
    let result = events
        .step(
            events::PACKAGES,
            format!("environment {key} with {installer}"),
            async {
                let _guard = lock.lock().await;
                let (env, built) = venv::build(
                    &toolchain,
                    &node.layout().venvs(),
                    &key,
                    &req,
                    cwd,
                    node.config().install_timeout,
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
        .await;
    super::build_limits::BuildCgroup::end(build, result, events::PACKAGES, "the package install")
        .await
}

/// The requirements file (its path and content), unless a locked deploy pins exact versions.
async fn read_requirements<'a>(
    spec: &'a Spec,
    dir: &Path,
) -> Result<Option<(&'a Path, String)>, StepError> {
    let Some(p) = spec
        .requirements
        .as_ref()
        .filter(|_| spec.pinned.is_empty())
    else {
        return Ok(None);
    };
    let text = tokio::fs::read_to_string(dir.join(&spec.workdir).join(p))
        .await
        .map_err(|e| {
            StepError::new(
                events::PACKAGES,
                format!("requirements: cannot read {}: {e}", p.display()),
            )
        })?;
    Ok(Some((p.as_path(), text)))
}

/// How the step names its installer: `uv 0.13 from PATH (pinned: 12 exact versions) for
/// 3.12.4 (/usr/bin/python3.12)`.
fn installer_words(
    toolchain: &crate::venvs::Toolchain,
    spec: &Spec,
    interpreter: Option<&crate::venvs::toolchain::Interpreter>,
) -> String {
    let mut words = match spec.pinned.len() {
        0 => toolchain.origin.clone(),
        n => format!("{} (pinned: {n} exact versions)", toolchain.origin),
    };
    if let Some(i) = interpreter {
        words.push_str(&format!(" for {} ({})", i.version, i.path.display()));
    }
    words
}

/// Whether the environment depends on the checkout: a requirements file (read from it), or
/// packages named by a path or a file URL (a path may be relative to the workdir).
pub(super) fn venv_needs_checkout(spec: &Spec) -> bool {
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
pub(super) async fn at_once<E>(
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
