//! `list`: every deployment in the state, a line each (no agent is asked).

use serde_json::json;

use crate::output::{self, Format};
use crate::project::Project;
use crate::state;

pub(crate) async fn run(project: &Project, format: Format) -> anyhow::Result<()> {
    let store = state::open(project)?;
    let st = store.load().await?;
    if format == Format::Json {
        let list: Vec<_> = st
            .deployments
            .iter()
            .map(|(name, d)| {
                let last = d.history.last();
                json!({
                    "name": name, "env": d.env, "owner": d.owner,
                    "repo": d.declaration.repo, "ref": d.declaration.git_ref,
                    "instances": d.instances.keys().collect::<Vec<_>>(),
                    "last_result": last.map(|h| h.result.clone()),
                })
            })
            .collect();
        println!("{}", json!({ "deployments": list }));
        return Ok(());
    }
    if st.deployments.is_empty() {
        println!("no deployments in {}", store.describe());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = st
        .deployments
        .iter()
        .map(|(name, d)| {
            let releases: Vec<String> = d
                .instances
                .values()
                .map(|i| i.release.to_string())
                .collect();
            let commit = d
                .instances
                .values()
                .next()
                .map(|i| crate::output::short_commit(&i.commit).to_string())
                .unwrap_or_default();
            vec![
                name.clone(),
                d.env.clone(),
                d.instances.len().to_string(),
                releases.join(","),
                d.declaration
                    .git_ref
                    .clone()
                    .unwrap_or_else(|| "HEAD".into()),
                commit,
                d.history
                    .last()
                    .map(|h| h.result.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME",
            "ENV",
            "INSTANCES",
            "RELEASE",
            "REF",
            "COMMIT",
            "LAST DEPLOY",
        ],
        &rows,
    );
    Ok(())
}
