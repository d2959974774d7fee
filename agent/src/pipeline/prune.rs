//! After a successful deploy has answered: the new venv's bytecode is compiled in the
//! background, and release directories and venvs no kept release uses are deleted.

use crate::deployment::Deployment;
use crate::store::Record;
use crate::supervisor::Supervisor;

pub(super) async fn after_success(sup: &Supervisor, d: &Deployment) {
    let record = d.record();
    if let Some(hash) = record
        .current_release()
        .map(|r| r.packages_hash.clone())
        .filter(|h| !h.is_empty())
    {
        sup.venvs().compile_later(&hash);
    }
    prune_releases(sup, &record).await;
    sup.collect_garbage().await;
}

/// Deletes release directories beyond the newest `keep_releases` good ones.
async fn prune_releases(sup: &Supervisor, record: &Record) {
    let keep: Vec<u32> = record
        .releases
        .iter()
        .rev()
        .filter(|r| r.result.is_ok())
        .take(sup.config().keep_releases.max(1))
        .map(|r| r.number)
        .collect();
    let dir = sup.layout().deployment(&record.name).join("releases");
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
