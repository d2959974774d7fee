//! `rollback NAME [--to N]`: deploy an earlier release again, exactly: its declaration as
//! deployed then, pinned to its commit. Default: the release before the current one.
//! The declaration file is left as it is.

use anyhow::anyhow;

use crate::decl::{self, DeploymentDecl};
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment to roll back (as in `deployctl status`)
    pub name: String,
    /// The release number to go back to (see `deployctl history NAME`)
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    let d = state::find(project, &args.name).await?;
    let good: Vec<&state::HistoryEntry> = d.history.iter().filter(|h| h.result == "ok").collect();
    let name = &args.name;
    // The history starts with what `status --refresh` found running: nothing before it is
    // known (agents report only the release they run).
    let refreshed = d.refreshed_from().map(|h| h.number);
    let unknown_before = |start: u32| {
        format!(
            "release {start}, the one running when `deployctl status --refresh` rebuilt the state: agents report only the release they run, so the declarations and commits of earlier releases are not known here. To go back to older code, deploy it by its ref or commit: `deployctl run {name} --ref REF` (a rollback can return to it later)"
        )
    };
    let entry = match args.to {
        Some(n) => {
            let e = d.history.iter().find(|h| h.number == n).ok_or_else(|| {
                crate::error::bad_input(match refreshed.filter(|start| n < *start) {
                    Some(start) => format!(
                        "--to: release {n} is from before {name}'s history, which starts at {}",
                        unknown_before(start)
                    ),
                    None => format!(
                        "--to: {name} has no release {n} (see `deployctl history {name}`)"
                    ),
                })
            })?;
            if e.result != "ok" {
                return Err(crate::error::bad_input(format!(
                    "--to: release {n} did not deploy ({}); pick one that did",
                    e.result
                )));
            }
            e
        }
        None => match good.len() {
            0 | 1 => {
                return Err(match refreshed {
                    Some(start) => anyhow!(
                        "{name} has no earlier release to roll back to in the state: its history starts at {}",
                        unknown_before(start)
                    ),
                    None => anyhow!("{name} has no earlier successful release to roll back to"),
                })
            }
            n => good[n - 2],
        },
    };
    // Exactly its commit, still known by its own ref (e.g. v1.0.0) in status and history.
    let mut target = entry.declaration.clone();
    target.git_ref = (!entry.git_ref.is_empty()).then(|| entry.git_ref.clone());
    let current = good.last().map(|h| h.number).unwrap_or(0);
    if format == Format::Text {
        println!(
            "Rolling {} back to release {} ({} {})",
            args.name,
            entry.number,
            entry.git_ref,
            crate::output::short_commit(&entry.commit)
        );
    }
    // The same environment too: exactly the versions that release ran with.
    let pinned = entry.frozen.clone();
    let how = super::run::How {
        format,
        verbose: false,
        write_back: false,
        pinned,
        rollout: Default::default(),
        // The release it goes back to was deployed with its artifacts as they were.
        allow_unpinned: true,
        commit: Some(entry.commit.clone()),
        note: format!("rollback to #{} (from #{current})", entry.number),
    };
    super::run::deploy(project, name, target, None, how).await?;
    // The declaration is not changed: say what a later `run --load` would do.
    let declared = decl::load::<DeploymentDecl>(&project.deployment_file(name))
        .ok()
        .flatten();
    if let (Some(d), Format::Text) = (declared, format) {
        if d.git_ref.as_deref() != Some(entry.git_ref.as_str()) {
            println!(
                "note: {name}.deploy.yaml still names ref {}; `deployctl run --load {name}` would deploy that again. To stay on this release's code, set it: `deployctl declare deployment {name} --ref {}`",
                d.git_ref.as_deref().unwrap_or("(the remote HEAD)"),
                if entry.git_ref.is_empty() { &entry.commit } else { &entry.git_ref }
            );
        }
    }
    Ok(())
}
