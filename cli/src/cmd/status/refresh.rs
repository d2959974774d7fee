//! `status --refresh`: rebuild the state from what the agents report.

use super::{Deployment, Instance};
use crate::decl;
use crate::output::Format;
use crate::project::Project;
use crate::state;

/// Writes what the agents report into the state: every instance they run, and a
/// deployment (with its declaration as deployed) the state did not know.
pub(super) async fn refresh(
    project: &Project,
    out: &[Deployment],
    format: Format,
) -> anyhow::Result<()> {
    let store = state::open(project)?;
    let now = state::now_unix();
    let mut added = 0;
    let mut updated = 0;
    store
        .update(&mut |st| {
            added = 0;
            updated = 0;
            for d in out {
                let live: Vec<&Instance> = d.instances.iter().filter(|i| i.s.is_some()).collect();
                let Some(first) = live.first().and_then(|i| i.s.as_ref()) else {
                    continue;
                };
                if !st.deployments.contains_key(&d.name) {
                    added += 1;
                    let mut declaration =
                        first.spec.as_ref().map(decl::from_spec).unwrap_or_default();
                    if d.env != project.default_env() {
                        declaration.env = Some(d.env.clone());
                    }
                    st.deployments.insert(
                        d.name.clone(),
                        state::DeploymentState {
                            declaration,
                            env: d.env.clone(),
                            owner: first.owner.clone(),
                            ..Default::default()
                        },
                    );
                } else {
                    updated += 1;
                }
                let Some(entry) = st.deployments.get_mut(&d.name) else {
                    continue;
                };
                for i in &d.instances {
                    match (&i.s, i.state.as_str()) {
                        (Some(s), _) => {
                            entry.instances.insert(
                                i.agent.clone(),
                                state::InstanceState {
                                    release: s.release,
                                    git_ref: s.git_ref.clone(),
                                    commit: s.commit.clone(),
                                    packages_hash: s.packages_hash.clone(),
                                    url: s.url.clone(),
                                    status: s.state.clone(),
                                    updated_at: now,
                                },
                            );
                        }
                        // The agent answered and does not run it: not an instance any more.
                        (None, "missing") => {
                            entry.instances.remove(&i.agent);
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        })
        .await?;
    if format == Format::Text {
        println!(
            "refreshed {}: {added} deployment(s) added, {updated} updated from the agents",
            store.describe()
        );
    }
    Ok(())
}
