//! `run NAME [flags]` / `run --load NAME`: write the declaration (flags over the existing
//! one), deploy it to every agent of its env at once with live progress, record the result
//! in the state, and print the URL(s).

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use super::check;
use super::flags::{new_declaration, DeployFlags};
use super::fresh;
use crate::decl::{self, DeploymentDecl};
use crate::error::bad_input;
use crate::output::Format;
use crate::project::Project;
use crate::state::{self, HistoryEntry};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment's name (its declaration is NAME.deploy.yaml)
    #[arg(value_name = "NAME", required_unless_present = "load")]
    pub name: Option<String>,
    /// Deploy an existing declaration NAME.deploy.yaml as it is
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    pub load: Option<String>,
    /// Show the installer's and start script's output as it comes
    #[arg(long, short)]
    pub verbose: bool,
    /// Install exactly the package versions of the last good deploy with the same packages
    /// (recorded with `pip freeze`), so a new upstream release changes nothing
    #[arg(long)]
    pub locked: bool,
    /// Deploy to at most N agents at a time (a rolling release across the env); a wave
    /// with a failed agent stops the rollout and the agents after it are not touched
    /// [default: every agent at once]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
    /// Deploy to the env's first agent alone first; only once it is healthy do the others
    /// follow (--max-parallel at a time). If it fails, the others are not touched and
    /// `run` exits 1 naming it
    #[arg(long)]
    pub canary: bool,
    /// Check first, and deploy only when `deployctl check` finds no warning (without it,
    /// run checks while it deploys and prints the findings after its result)
    #[arg(long)]
    pub strict: bool,
    /// Show what the run would change on each agent (`deployctl plan`) and change nothing:
    /// the declaration is not written
    #[arg(long)]
    pub dry_run: bool,
    /// Accept artifacts without a sha256 (development only): each deploy downloads them
    /// again and nothing proves it is the same file; `deployctl check` warns about them
    #[arg(long)]
    pub allow_unpinned: bool,
    #[command(flatten)]
    pub flags: DeployFlags,
}

mod attempts;
mod deploy;
mod record;
mod report;
mod rollout;
mod waves;

pub(crate) use attempts::{deploy_change, Change, OnStale};
pub(crate) use deploy::How;
pub(crate) use rollout::Rollout;
pub(crate) use waves::relaunch;

/// What one agent said about the deploy.
struct AgentResult {
    address: String,
    /// The agent accepted the request (it passed the agent's validation).
    accepted: bool,
    outcome: Result<pb::DeployOutcome, NotDeployed>,
}

/// Why an agent did not deploy, when it gave no outcome.
#[derive(Debug, Clone)]
enum NotDeployed {
    /// The agent refused the request as invalid: bad input (exit 2 when every agent says so).
    BadInput(String),
    /// Anything else: not reachable, the connection broke, no result.
    Failed(String),
    /// Not tried: an earlier wave of the rollout (the canary) failed.
    Skipped(String),
    /// Refused by the agent: the deployment changed there since the generation the deploy
    /// was based on (what changed, in the agent's words).
    Stale(String),
    /// The stream broke before the outcome: how it ends there is not known yet.
    Lost(String),
}

impl std::fmt::Display for NotDeployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotDeployed::BadInput(why)
            | NotDeployed::Failed(why)
            | NotDeployed::Skipped(why)
            | NotDeployed::Stale(why)
            | NotDeployed::Lost(why) => f.write_str(why),
        }
    }
}

/// `run` in phases: the name and its lock, the declaration (the flags over the file), the
/// locked versions, a dry run's plan; otherwise the checks started, the deploy (done
/// again on fresh data where the deployment changed meanwhile), the checks' findings.
pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    let name = match (&args.name, &args.load) {
        (_, Some(n)) | (Some(n), None) => n.clone(),
        (None, None) => return Err(bad_input("NAME: give a deployment name")),
    };
    decl::validate_name("name", &name)?;
    // From reading the declaration to writing it back, no other command of this project
    // changes the deployment (a dry run changes nothing).
    let _lock = match args.dry_run {
        true => None,
        false => Some(decl::lock::lock(project, &name)?),
    };
    let (_, d) = declaration(project, &name, &args)?;
    let pinned = if args.locked {
        locked_versions(project, &name, &d).await?
    } else {
        Vec::new()
    };
    if args.dry_run {
        return super::plan::show(project, &name, &d, format).await;
    }
    let checks = start_checks(project, &name, &d, &args, format).await?;
    let how = How {
        format,
        verbose: args.verbose,
        write_back: true,
        pinned,
        rollout: Rollout {
            max_parallel: args.max_parallel.map(|n| n as usize),
            canary: args.canary,
        },
        allow_unpinned: args.allow_unpinned,
        ..Default::default()
    };
    let env = d.env.clone().unwrap_or_else(|| project.default_env());
    // Where the deployment changed meanwhile (from elsewhere: this project's commands wait
    // for each other), the declaration and flags are read again and deployed on top of it.
    let prepare = |_: &fresh::Fresh| {
        let (existing, d) = declaration(project, &name, &args)?;
        let how = how.clone();
        Ok(Some(Change { d, existing, how }))
    };
    let changed = deploy_change(project, &name, &env, format, OnStale::Redo, prepare).await;
    print_checks(checks, &name, format).await;
    changed?.result
}

/// The checks a deploy runs. With --strict they decide whether it deploys, so they run
/// first (an error: a warning stops it). Otherwise they run while it deploys (they read
/// the working tree and ask the local Python: a few tenths of a second a deploy need not
/// wait for), to be printed after its result (`print_checks`); a rollback being left is
/// said at once.
async fn start_checks(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
    args: &Args,
    format: Format,
) -> anyhow::Result<Option<tokio::task::JoinHandle<Vec<check::Finding>>>> {
    if args.strict {
        preflight(project, name, d, args, format).await?;
        return Ok(None);
    }
    let rolled_back: Vec<_> = after_rollback(project, name, d).await.into_iter().collect();
    check::print_for_run(&rolled_back, format);
    let (p, n, dd, locked) = (project.clone(), name.to_string(), d.clone(), args.locked);
    Ok(Some(tokio::spawn(async move {
        let scope = check::Scope {
            project: &p,
            name: &n,
            locked,
            // The deploy starts the local agent when it must: not twice.
            autostart: false,
        };
        check::findings(&scope, &dd).await
    })))
}

/// Prints the findings of the checks that ran while the deploy did, once they are done;
/// an agent they could not reach yet is the deploy's to report.
async fn print_checks(
    checks: Option<tokio::task::JoinHandle<Vec<check::Finding>>>,
    name: &str,
    format: Format,
) {
    let found = match checks {
        Some(handle) => handle.await.unwrap_or_default(),
        None => Vec::new(),
    };
    // An agent the checks could not reach yet is the deploy's to report.
    let found: Vec<check::Finding> = found
        .into_iter()
        .filter(|f| !(f.check == "not-checked" && f.agent.is_some()))
        .collect();
    if !found.is_empty() && format == Format::Text {
        println!(
            "Checks (`deployctl check {name}`; `run --strict` deploys only without warnings):"
        );
    }
    check::print_for_run(&found, format);
}

/// The declaration file as it is (if any), and the declaration `run` deploys: the file
/// with the flags over it, validated.
fn declaration(
    project: &Project,
    name: &str,
    args: &Args,
) -> anyhow::Result<(Option<DeploymentDecl>, DeploymentDecl)> {
    let path = project.deployment_file(name);
    let existing: Option<DeploymentDecl> = decl::load(&path)?;
    if args.load.is_some() && existing.is_none() {
        return Err(bad_input(format!(
            "--load {name}: {} does not exist; write it with `deployctl declare deployment {name} ...`",
            path.display()
        )));
    }
    if existing.is_none() && args.flags.repo.is_none() {
        return Err(bad_input(format!(
            "repo: {name} has no declaration ({} does not exist), so --repo and --command are required",
            path.display()
        )));
    }
    let mut d = existing.clone().unwrap_or_else(new_declaration);
    let cwd = std::env::current_dir().unwrap_or_else(|_| project.root.clone());
    args.flags.apply(&mut d, &cwd, &project.root)?;
    d.validate(name)?;
    if let Some((i, a)) = d
        .artifacts
        .iter()
        .enumerate()
        .find(|(_, a)| a.unpinned() && !args.allow_unpinned)
    {
        return Err(bad_input(format!(
            "artifacts[{i}].sha256: is required for {} (64 hex digits: sha256sum FILE), so every node gets the same file; to deploy it unpinned while developing, run with --allow-unpinned",
            a.shown_url()
        )));
    }
    Ok((existing, d))
}

/// `check`'s findings, as warnings before the deploy; with `--strict`, any warning stops it.
async fn preflight(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
    args: &Args,
    format: Format,
) -> anyhow::Result<()> {
    let scope = check::Scope {
        project,
        name,
        locked: args.locked,
        autostart: true,
    };
    let mut found = after_rollback(project, name, d)
        .await
        .into_iter()
        .collect::<Vec<_>>();
    found.extend(check::findings(&scope, d).await);
    let warnings = check::print_for_run(&found, format);
    if args.strict && warnings > 0 {
        let what = if warnings == 1 {
            "1 warning"
        } else {
            "warnings"
        };
        return Err(anyhow!(
            "--strict: nothing was deployed because of the {what} above; fix them (see `deployctl check {name}`) or run without --strict"
        ));
    }
    Ok(())
}

/// When the release running now is a rollback and this run deploys another ref: it goes
/// forward again, which a `run --load` after a rollback does without anyone asking.
async fn after_rollback(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
) -> Option<check::Finding> {
    let st = state::open(project).ok()?.load().await.ok()?;
    let last = st
        .deployments
        .get(name)?
        .history
        .iter()
        .rev()
        .find(|h| h.result == "ok")?;
    if !last.note.starts_with("rollback") || d.git_ref.as_deref() == Some(last.git_ref.as_str()) {
        return None;
    }
    let at = if last.git_ref.is_empty() {
        &last.commit
    } else {
        &last.git_ref
    };
    Some(check::Finding::warning(
        "after-rollback",
        format!(
            "release #{} running now is a {} ({at}); this deploys {} again",
            last.number,
            last.note,
            d.git_ref.as_deref().unwrap_or("the remote HEAD")
        ),
        format!("to stay on {at}, deploy with --ref {at} (or fix the code and deploy anyway)"),
    ))
}

/// The frozen versions of the last good deploy whose package declaration is the same.
async fn locked_versions(
    project: &Project,
    name: &str,
    d: &DeploymentDecl,
) -> anyhow::Result<Vec<String>> {
    let st = state::open(project)?.load().await?;
    let same_inputs = |h: &&HistoryEntry| {
        h.result == "ok"
            && !h.frozen.is_empty()
            && h.declaration.packages.pip == d.packages.pip
            && h.declaration.requirements == d.requirements
    };
    st.deployments
        .get(name)
        .and_then(|e| e.history.iter().rev().find(same_inputs))
        .map(|h| h.frozen.clone())
        .ok_or_else(|| {
            anyhow!(
                "--locked: no earlier deploy of {name} recorded exact versions for these packages; deploy once without --locked"
            )
        })
}
