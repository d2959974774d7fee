//! `state copy [--from URI] [--to URI] [--force]`: copy every deployment record (its
//! declaration, env, owner, instances and whole history) from one state backend to
//! another, e.g. after `config set core.state.uri` moved the team to etcd. The source is
//! read under its lock; the target is changed with its locked read-modify-write (the file
//! lock, or etcd's compare-and-swap transaction), so a `deployctl` running meanwhile loses
//! nothing. What the target has already is never lost without `--force`.
//! `state rebuild` (the state from what the agents keep) is `status/refresh.rs`.

use anyhow::{anyhow, Context};
use clap::Subcommand;
use serde_json::json;

use crate::error::bad_input;
use crate::output::Format;
use crate::project::Project;
use crate::state::{self, DeploymentState, Fit, StateStore};

#[derive(Subcommand, Debug)]
pub(crate) enum StateCommand {
    /// Copy every deployment record (declaration, owner, instances, whole history) from one
    /// state to another
    #[command(after_help = "\
Each deployment of the source is:
  copied    when the target has no record of it (or only the releases `status --refresh`
            or `state rebuild` found on the agents, which the source's history has)
  skipped   when the target has the same record, or the source's whole history and more
            (deployed since with the target as the state)
  refused   when the target's record differs: then nothing at all is written, unless
            --force, which replaces those records with the source's (printed as replaced)
Deployments only in the target are kept. Nothing is ever removed from the source. The
target is changed in one locked read-modify-write (the file's lock, an etcd transaction),
so a deployctl deploying meanwhile loses nothing.

URIs are written as core.state.uri is: a path (relative to the project directory),
file:///path or etcd://HOST:PORT/PREFIX. A file target's directory is created.

Examples:
  deployctl config set core.state.uri etcd://10.0.0.5:2379/ml-team
  deployctl state copy --from .deployctl/state.json     the old file into etcd
  deployctl state copy --to backup.json                 etcd into a file, e.g. a backup

Exit codes: 0 copied (or nothing to do), 1 refused (nothing written) or a state could not
be read or written, 2 bad input (e.g. --from and --to are the same state).")]
    Copy(CopyArgs),
    /// Rebuild the state from what the agents keep (e.g. after it was lost): each
    /// deployment, its owner, declaration as deployed and the releases the agents keep
    #[command(after_help = "\
Asks every agent of the project's envs (with --env, of that env only) for the deployments
it runs and the releases it keeps of each (number, ref, commit, packages hash, when, how it
went, and the declaration it was deployed with). For each deployment it writes into the
state:
  - its entry, when the state has none: env, owner, declaration as deployed
  - its instances, as the agents that answered report them
  - the releases its history lacks, numbered as the agents number them (merged across the
    env's agents by release number)
Nothing that runs is touched. Nothing the state has is replaced or dropped: a release
the state has already is left as it is; one whose number the state gives to another
deploy is left out, and said so. Where agents disagree on a release number (different
commits), the commit most of them have is kept (then the first agent in the env's
order); the others' release of that number is left out, and said so. An agent that does
not answer is named, and what it keeps is not in the state: run it again when the agent is
back. `status --refresh` does the same for the deployments it shows.

It says per deployment what it did, e.g.
  iris: 3 releases from 2 agents, current 3

Exit codes: 0 rebuilt (or nothing to do), 1 an agent did not answer (what the others keep
was written) or the state could not be read or written, 2 bad input (an unknown --env).")]
    Rebuild(RebuildArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct RebuildArgs {
    /// Only the deployments on this env's agents [default: every env of the project]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CopyArgs {
    /// The state to copy from [default: core.state.uri]
    #[arg(long, value_name = "URI")]
    pub from: Option<String>,
    /// The state to copy to [default: core.state.uri]
    #[arg(long, value_name = "URI")]
    pub to: Option<String>,
    /// Also replace the target's records that differ from the source's (the target's
    /// history of those deployments is lost)
    #[arg(long)]
    pub force: bool,
}

/// What happened to one deployment.
struct Line {
    name: String,
    /// copied, replaced, skipped, kept
    result: &'static str,
    releases: usize,
    text: String,
}

pub(crate) async fn run(
    project: &Project,
    cmd: StateCommand,
    format: Format,
) -> anyhow::Result<()> {
    let args = match cmd {
        StateCommand::Copy(args) => args,
        StateCommand::Rebuild(args) => {
            return super::status::rebuild(project, args.env.as_deref(), format).await
        }
    };
    let configured = project.state_uri();
    let (from_uri, from) = open(project, "--from", args.from.as_deref())?;
    let (to_uri, to) = open(project, "--to", args.to.as_deref())?;
    if from.describe() == to.describe() {
        return Err(bad_input(format!(
            "--from and --to: both are {from_uri} ({}); name the other state with --from URI or --to URI (each defaults to core.state.uri, {configured})",
            from.describe()
        )));
    }
    if let Some(path) = state::file_path(project, &from_uri).filter(|p| !p.exists()) {
        return Err(bad_input(format!(
            "--from: {from_uri}: {} does not exist",
            path.display()
        )));
    }
    let source = from
        .load()
        .await
        .with_context(|| format!("reading --from {from_uri}"))?;
    let mut lines: Vec<Line> = Vec::new();
    to.update(&mut |target| {
        lines = plan(&source, target, &from_uri, &to_uri, args.force)?;
        for line in &lines {
            if let ("copied" | "replaced", Some(dep)) =
                (line.result, source.deployments.get(&line.name))
            {
                target.deployments.insert(line.name.clone(), dep.clone());
            }
        }
        Ok(())
    })
    .await?;
    let count = |r: &str| lines.iter().filter(|l| l.result == r).count();
    let (copied, replaced, skipped) = (count("copied"), count("replaced"), count("skipped"));
    if format == Format::Json {
        let list: Vec<_> = lines
            .iter()
            .map(|l| json!({"name": l.name, "result": l.result, "releases": l.releases, "what": l.text}))
            .collect();
        println!(
            "{}",
            json!({"from": from_uri, "to": to_uri, "deployments": list,
                   "copied": copied, "replaced": replaced, "skipped": skipped})
        );
        return Ok(());
    }
    if source.deployments.is_empty() {
        println!("nothing to copy: {from_uri} holds no deployments");
    }
    for l in &lines {
        println!("{}", l.text);
    }
    let replaced = if args.force {
        format!("{replaced} replaced, ")
    } else {
        String::new()
    };
    println!("{copied} copied, {replaced}{skipped} skipped: {from_uri} → {to_uri}");
    Ok(())
}

/// The state a flag names, else the configured one (errors then name core.state.uri).
fn open(
    project: &Project,
    flag: &str,
    given: Option<&str>,
) -> anyhow::Result<(String, Box<dyn StateStore>)> {
    Ok(match given {
        Some(uri) => (uri.to_string(), state::open_as(project, flag, uri)?),
        None => (project.state_uri(), state::open(project)?),
    })
}

fn releases(n: usize) -> String {
    if n == 1 {
        "1 release".to_string()
    } else {
        format!("{n} releases")
    }
}

/// What happens to each deployment (the source's, then those only in the target), or the
/// refusal naming every record that differs (without `force`).
fn plan(
    source: &state::State,
    target: &state::State,
    from_uri: &str,
    to_uri: &str,
    force: bool,
) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    let mut refused = Vec::new();
    for (name, dep) in &source.deployments {
        let there: Option<&DeploymentState> = target.deployments.get(name);
        let n = dep.history.len();
        let (result, text) = match state::compare(dep, there) {
            Fit::Missing => ("copied", format!("copied {name} ({})", releases(n))),
            Fit::OnlyRefreshed => (
                "copied",
                format!(
                    "copied {name} ({}; {to_uri} knew only what the agents keep, from `status --refresh` or `state rebuild`)",
                    releases(n)
                ),
            ),
            Fit::Same => ("skipped", format!("skipped {name}: already the same")),
            Fit::TargetHasAll { more: 0 } => (
                "skipped",
                format!("skipped {name}: the target has the same {}", releases(n)),
            ),
            Fit::TargetHasAll { more } => (
                "skipped",
                format!(
                    "skipped {name}: the target has its {} and {more} more",
                    releases(n)
                ),
            ),
            Fit::Differs { from } => {
                let m = there.map_or(0, |t| t.history.len());
                if !force {
                    refused.push(format!(
                        "{name} ({} there, {n} in {from_uri}; they differ from release {from})",
                        releases(m)
                    ));
                    continue;
                }
                (
                    "replaced",
                    format!(
                        "replaced {name} ({}; the target's {} differed from release {from})",
                        releases(n),
                        releases(m)
                    ),
                )
            }
        };
        lines.push(Line {
            name: name.clone(),
            result,
            releases: n,
            text,
        });
    }
    if !refused.is_empty() {
        return Err(anyhow!(
            "nothing was copied: {to_uri} has a different record of {}: {}. `--force` replaces {} with the one in {from_uri} (the history in {to_uri} is lost)",
            if refused.len() == 1 { "1 deployment".to_string() } else { format!("{} deployments", refused.len()) },
            refused.join("; "),
            if refused.len() == 1 { "it" } else { "them" },
        ));
    }
    for (name, dep) in &target.deployments {
        if !source.deployments.contains_key(name) {
            lines.push(Line {
                name: name.clone(),
                result: "kept",
                releases: dep.history.len(),
                text: format!("kept {name}: only in {to_uri}"),
            });
        }
    }
    Ok(lines)
}
