//! `clone NAME NEW_NAME [--owner OWNER]`: deploy a copy of a deployment under a new name
//! and owner — how ownership moves to a group. Refuses, naming each, when the new owner
//! lacks a secret or a git credential the deployment uses.

use anyhow::anyhow;

use super::run::{self, How};
use crate::client::{self, Target};
use crate::decl::{self, DeploymentDecl};
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    pub name: String,
    pub new_name: String,
    /// The new deployment's owner, e.g. group:ml [default: the same owner]
    #[arg(long)]
    pub owner: Option<String>,
    /// The copy's port, when it runs beside the original on the same agents
    #[arg(long, allow_negative_numbers = true)]
    pub port: Option<i64>,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("NAME", &args.name)?;
    decl::validate_name("NEW_NAME", &args.new_name)?;
    let st = state::open(project)?.load().await?;
    let (source, source_owner) = match st.deployments.get(&args.name) {
        Some(d) => (d.declaration.clone(), d.owner.clone()),
        None => match decl::load::<DeploymentDecl>(&project.deployment_file(&args.name))? {
            Some(d) => {
                let o = d.owner.clone().unwrap_or_default();
                (d, o)
            }
            None => {
                return Err(anyhow!(
                    "deployment {:?} not found (not in the state, no declaration)",
                    args.name
                ))
            }
        },
    };
    if project.deployment_file(&args.new_name).exists()
        || st.deployments.contains_key(&args.new_name)
    {
        return Err(crate::error::bad_input(format!(
            "NEW_NAME: {:?} exists already; pick a new name",
            args.new_name
        )));
    }
    let mut copy = source.clone();
    if let Some(o) = &args.owner {
        copy.owner = Some(o.clone());
    }
    if let Some(port) = args.port {
        copy.port = Some(port);
    }
    copy.validate(&args.new_name)?;
    let env = copy.env.clone().unwrap_or_else(|| project.default_env());
    let target = client::resolve_env(project, &env)?;
    let new_owner = super::secret::owner_or_caller(&target, copy.owner.clone()).await?;

    let missing = missing_for(&target, &copy, &source_owner, &new_owner).await?;
    if !missing.is_empty() {
        return Err(anyhow!(
            "{new_owner} cannot run a copy of {}: it lacks {}. Add them with `deployctl secret set --owner {new_owner} NAME`, then clone again",
            args.name,
            missing.join(", ")
        ));
    }
    if format == Format::Text {
        println!(
            "Cloning {} as {} owned by {new_owner}",
            args.name, args.new_name
        );
    }
    let how = How {
        format,
        verbose: false,
        write_back: true,
        pinned: Vec::new(),
        rollout: Default::default(),
        commit: None,
        note: format!("clone of {}", args.name),
    };
    run::deploy(project, &args.new_name, copy, None, how).await
}

/// What the new owner lacks on some agent, once each; an agent that does not answer
/// stops the clone (it could not be checked).
async fn missing_for(
    target: &Target,
    d: &DeploymentDecl,
    old_owner: &str,
    new_owner: &str,
) -> anyhow::Result<Vec<String>> {
    let (lacks, unreachable) =
        super::check::secrets::lacking(&target.no_autostart(), d, old_owner, new_owner).await;
    if let Some((_, why)) = unreachable.into_iter().next() {
        return Err(anyhow!(why));
    }
    let mut missing: Vec<String> = Vec::new();
    for l in lacks {
        if !missing.contains(&l.item) {
            missing.push(l.item);
        }
    }
    Ok(missing)
}
