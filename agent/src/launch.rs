//! What a release's processes get, in one place for the deploy and for recovery: the
//! directory, variables (with the owner's secrets, read at each start, never recorded),
//! PATH, the user to run as, and the instance that supervises them.

use std::path::Path;
use std::sync::Arc;

use crate::deployment::Deployment;
use crate::instance::InstanceConfig;
use crate::process::Launch;
use crate::store::ReleaseRecord;
use crate::supervisor::Supervisor;

/// Everything an app (or its start script) gets: directory, variables, PATH, user.
pub(crate) async fn launch(sup: &Supervisor, release: &ReleaseRecord, dir: &Path) -> Launch {
    let spec = &release.spec;
    let mut env: Vec<(String, String)> = vec![
        ("PORT".into(), spec.port.to_string()),
        ("HOST".into(), sup.config().app_host.to_string()),
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
    // Read at each start, never kept in the record.
    match sup.secrets().env_values(&spec.owner, &spec.secrets).await {
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
        run_as: sup.run_as(),
    }
}

/// How `release` of `d` runs under an instance.
pub(crate) async fn instance_config(
    sup: &Supervisor,
    d: &Arc<Deployment>,
    release: &ReleaseRecord,
) -> InstanceConfig {
    let spec = &release.spec;
    let dir = sup.layout().release(&spec.name, release.number);
    InstanceConfig {
        name: spec.name.clone(),
        release: release.number,
        launch: launch(sup, release, &dir).await,
        log: sup.layout().app_log(&spec.name),
        host: sup.config().app_host,
        port: spec.port,
        health: spec.health.clone(),
        restart: spec.restart,
        kill_timeout: spec.kill_timeout,
        observer: sup.observer(d),
        tracker: sup.tracker().clone(),
        launcher: Arc::new(crate::instance::Processes),
    }
}
