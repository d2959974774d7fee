//! `check NAME`: what would make a deployment work on the laptop but fail deployed, found
//! before anything runs — files not in git, commits not pushed, data files the code opens
//! that git does not have, packages imported but not declared or declared without a pin,
//! a `cd` or a literal port in the command, secrets the owner lacks on an agent, a branch
//! where a tag would pin the code. Each finding comes with its fix in one line.
//!
//! `run` makes the same checks while it deploys and prints the findings as warnings after
//! its result (`--strict`: first, and it deploys only without a warning).

mod artifacts;
mod code;
mod command;
mod git;
mod own;
mod packages;
mod refs;
pub(crate) mod secrets;

use serde::Serialize;

use crate::decl::{self, DeploymentDecl};
use crate::error::{bad_input, Reported};
use crate::output::Format;
use crate::project::Project;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl check iris                 the findings for iris.deploy.yaml, each with its fix
  deployctl check iris --output json   one JSON object per finding
  deployctl run iris --strict          deploy only when check finds no warning

Where the repository is a local path, or the current directory is a clone of it, check also
reads the working tree: uncommitted files, commits the deploy will not have, data files the
code opens that git does not track, and imports whose package is installed in the local
Python ($VIRTUAL_ENV, else python3 on PATH) but not declared.

Exit codes: 0 no warnings (info findings allowed), 1 at least one warning, 2 bad input.")]
pub(crate) struct Args {
    /// The deployment to check (its declaration NAME.deploy.yaml)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Check as a `run --locked` would deploy it (pinned by the last good deploy's versions)
    #[arg(long)]
    pub locked: bool,
}

/// How much a finding matters: a warning fails `check` and `run --strict`; an info does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Warning,
    Info,
}

/// One thing check found, with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    /// A stable name for scripts: ref-not-found, uncommitted, not-deployed-commits, ref-not-head,
    /// untracked-data, undeclared-package, unpinned-packages, cd-in-command,
    /// literal-port, missing-secret, missing-git-credential, branch-ref, unpinned-artifact,
    /// artifact-in-repository, not-checked.
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    pub fix: String,
    /// The agent it concerns (secrets), when it is one agent's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl Finding {
    pub(crate) fn warning(check: &'static str, message: String, fix: String) -> Finding {
        Finding {
            check,
            level: Level::Warning,
            message,
            fix,
            agent: None,
        }
    }

    pub(crate) fn info(check: &'static str, message: String, fix: String) -> Finding {
        Finding {
            level: Level::Info,
            ..Finding::warning(check, message, fix)
        }
    }
}

/// What the checks need besides the declaration.
pub(crate) struct Scope<'a> {
    pub project: &'a Project,
    pub name: &'a str,
    /// The deploy pins exact versions (`--locked`, a rollback): unpinned is no finding.
    pub locked: bool,
    /// Start the built-in local agent to ask it about secrets (`run` starts it anyway).
    pub autostart: bool,
}

pub(crate) async fn run(project: &Project, args: Args, format: Format) -> anyhow::Result<()> {
    decl::validate_name("NAME", &args.name)?;
    let path = project.deployment_file(&args.name);
    let Some(d) = decl::load::<DeploymentDecl>(&path)? else {
        return Err(bad_input(format!(
            "NAME: {} does not exist; write it with `deployctl declare deployment {} --repo ... --command ...`",
            path.display(),
            args.name
        )));
    };
    d.validate(&args.name)?;
    let scope = Scope {
        project,
        name: &args.name,
        locked: args.locked,
        autostart: false,
    };
    let found = findings(&scope, &d).await;
    let warnings = found.iter().filter(|f| f.level == Level::Warning).count();
    match format {
        Format::Json => {
            for f in &found {
                println!("{}", serde_json::to_string(f)?);
            }
        }
        Format::Text => {
            println!("Checking {} ({})", args.name, describe_source(project, &d));
            for f in &found {
                println!("{}", render(f));
            }
            let infos = found.len() - warnings;
            if found.is_empty() {
                println!("No findings: nothing here works on this machine only.");
            } else {
                println!(
                    "{}",
                    plural(warnings, "warning") + ", " + &plural(infos, "info")
                );
            }
        }
    }
    if warnings > 0 {
        return Err(Reported.into());
    }
    Ok(())
}

/// Every check, in the order a person would fix them.
pub(crate) async fn findings(scope: &Scope<'_>, d: &DeploymentDecl) -> Vec<Finding> {
    let repo = decl::absolute_repo(&d.repo, &scope.project.root);
    let cwd = std::env::current_dir().unwrap_or_else(|_| scope.project.root.clone());
    let own = own::OwnFiles::of(scope.project);
    let local = {
        let (d, repo) = (d.clone(), repo.clone());
        let locked = scope.locked;
        tokio::task::spawn_blocking(move || local_findings(&d, &repo, &cwd, locked, &own))
            .await
            .unwrap_or_else(|e| {
                vec![Finding::info(
                    "not-checked",
                    format!("the local checks stopped: {e}"),
                    "run `deployctl check` again".into(),
                )]
            })
    };
    let mut all = local;
    all.extend(secrets::findings(scope, d).await);
    // Infos last: the warnings are what stop a strict run.
    all.sort_by_key(|f| f.level == Level::Info);
    all
}

/// The checks that read this machine only: the repository's working tree, the local
/// Python, the declaration itself.
fn local_findings(
    d: &DeploymentDecl,
    repo: &str,
    cwd: &std::path::Path,
    locked: bool,
    own: &own::OwnFiles,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let tree = git::locate(repo, cwd);
    let workdir = d.workdir.clone().unwrap_or_default();
    // A ref that does not exist fails the deploy at its first step: said first.
    out.extend(refs::missing(tree.as_ref(), repo, d.git_ref.as_deref()));
    if let Some(tree) = &tree {
        out.extend(git::findings(tree, d.git_ref.as_deref(), &workdir, own));
    }
    let files = tree
        .as_ref()
        .filter(|t| !t.bare)
        .map(|t| code::python_files(t, &workdir))
        .unwrap_or_default();
    if let Some(tree) = tree.as_ref().filter(|t| !t.bare) {
        out.extend(code::untracked_data(
            tree,
            &workdir,
            &files,
            &artifacts::paths(d),
        ));
    }
    let (requirements, outside) = tree
        .as_ref()
        .filter(|t| !t.bare)
        .and_then(|t| {
            d.requirements
                .as_ref()
                .map(|r| packages::read_requirements(&t.top.join(&workdir).join(r), &t.top))
        })
        .unwrap_or_default();
    for p in outside {
        out.push(Finding::warning(
            "requirements-outside",
            format!(
                "{} is a link to a file outside the repository: the agent refuses it (and it is not read here)",
                p.display()
            ),
            "commit the requirements themselves into the repository instead of a link".into(),
        ));
    }
    if let Some(tree) = tree.as_ref().filter(|t| !t.bare) {
        out.extend(packages::undeclared(
            tree,
            &workdir,
            &files,
            &d.packages.pip,
            &requirements,
        ));
    }
    if !locked {
        out.extend(packages::unpinned(&d.packages.pip, &requirements));
    }
    out.extend(command::findings(d));
    out.extend(artifacts::findings(d, tree.as_ref().filter(|t| !t.bare)));
    if let Some(f) = git::branch_ref(tree.as_ref(), d.git_ref.as_deref()) {
        out.push(f);
    }
    out
}

fn describe_source(project: &Project, d: &DeploymentDecl) -> String {
    let at = d.git_ref.as_deref().unwrap_or("the remote HEAD");
    let repo = decl::absolute_repo(&d.repo, &project.root);
    format!("{repo} at {at}")
}

fn plural(n: usize, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "info") => format!("{n} info"),
        _ => format!("{n} {what}s"),
    }
}

/// A finding as text: its level, what and the fix, on two lines.
pub(crate) fn render(f: &Finding) -> String {
    let level = match f.level {
        Level::Warning => "warning",
        Level::Info => "info",
    };
    let at = f
        .agent
        .as_ref()
        .map(|a| format!(" [{a}]"))
        .unwrap_or_default();
    format!("{level}{at}: {}\n  fix: {}", f.message, f.fix)
}

/// The findings as `run` prints them before deploying; returns how many are warnings.
pub(crate) fn print_for_run(found: &[Finding], format: Format) -> usize {
    for f in found {
        match format {
            Format::Json => {
                let mut v = serde_json::json!({"step": "check", "phase": "finding"});
                if let (Some(obj), Ok(serde_json::Value::Object(finding))) =
                    (v.as_object_mut(), serde_json::to_value(f))
                {
                    obj.extend(finding);
                }
                println!("{v}");
            }
            Format::Text => println!("{}", render(f)),
        }
    }
    found.iter().filter(|f| f.level == Level::Warning).count()
}

/// Up to `n` items joined, with how many more.
pub(crate) fn some_of(items: &[String], n: usize) -> String {
    let mut s = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        s.push_str(&format!(" and {} more", items.len() - n));
    }
    s
}
