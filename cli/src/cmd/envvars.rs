//! `env set NAME KEY=VALUE...` / `env unset NAME KEY...`: change a running deployment's
//! environment variables without a new build — the same commit (pinned, still known by
//! its ref), the same packages (so the same environment is reused), a new process that
//! takes the traffic once healthy — written to the declaration and recorded in history
//! like any release (and rolled back like one).

use anyhow::anyhow;
use clap::Subcommand;

use std::collections::BTreeMap;

use super::fresh::Fresh;
use super::run::{self, How, OnStale};
use crate::decl::{self, DeploymentDecl, Scalar};
use crate::error::bad_input;
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(Subcommand, Debug)]
pub(crate) enum EnvVars {
    /// Set env vars: same commit and environment, a new process, a history entry
    #[command(after_help = "\
Examples:
  deployctl env set iris LOG_LEVEL=debug
  deployctl env set iris MODEL_PATH=models/v2.pkl BATCH=32

Exit codes: 0 healthy with the new values everywhere, 1 a deploy failed (the previous
release keeps running there), 2 bad input (nothing changed).")]
    Set {
        /// The deployment (as in `deployctl status`)
        #[arg(value_name = "NAME")]
        name: String,
        /// The variables to set
        #[arg(value_name = "KEY=VALUE", required = true)]
        vars: Vec<String>,
    },
    /// Remove env vars: same commit and environment, a new process, a history entry
    #[command(after_help = "\
Examples:
  deployctl env unset iris LOG_LEVEL

Exit codes: as `env set`.")]
    Unset {
        /// The deployment (as in `deployctl status`)
        #[arg(value_name = "NAME")]
        name: String,
        /// The variables to remove
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
}

/// One change to the env vars.
enum Change {
    Set(Vec<(String, String)>),
    Unset(Vec<String>),
}

impl Change {
    fn apply(&self, vars: &mut BTreeMap<String, Scalar>) {
        match self {
            Change::Set(kv) => {
                for (k, v) in kv {
                    vars.insert(k.clone(), Scalar::Text(v.clone()));
                }
            }
            Change::Unset(keys) => {
                for k in keys {
                    vars.remove(k);
                }
            }
        }
    }

    fn note(&self) -> String {
        match self {
            Change::Set(kv) => format!(
                "env set {}",
                kv.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Change::Unset(keys) => format!("env unset {}", keys.join(", ")),
        }
    }
}

fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) async fn run(project: &Project, cmd: EnvVars, format: Format) -> anyhow::Result<()> {
    let (name, change) = match cmd {
        EnvVars::Set { name, vars } => {
            let mut kv = Vec::new();
            for v in vars {
                let Some((k, val)) = v.split_once('=') else {
                    return Err(bad_input(format!(
                        "KEY=VALUE: {v:?} has no '='; write e.g. LOG_LEVEL=debug"
                    )));
                };
                if !valid_key(k) {
                    return Err(bad_input(format!(
                        "KEY=VALUE: {k:?} is not an environment variable name (letters, digits, _; not starting with a digit)"
                    )));
                }
                kv.push((k.to_string(), val.to_string()));
            }
            (name, Change::Set(kv))
        }
        EnvVars::Unset { name, keys } => (name, Change::Unset(keys)),
    };
    decl::validate_name("NAME", &name)?;
    // From reading the state to writing the declaration back, no other command of this
    // project changes the deployment: `env set A=1 & env set B=2` ends with both.
    let _lock = decl::lock::lock(project, &name)?;
    let env = state::find(project, &name).await?.env;
    // Computed on what the agents run, at the generation they report; where it changed
    // meanwhile (from elsewhere), computed again on what runs then.
    let prepare = |fresh: &Fresh| next_declaration(&name, &change, fresh, format);
    let changed = run::deploy_change(project, &name, &env, format, OnStale::Redo, prepare).await?;
    // The declaration gets the change once it deployed somewhere (like `run`'s flags).
    if changed.deployed {
        let path = project.deployment_file(&name);
        if let Some(mut file) = decl::load::<DeploymentDecl>(&path)? {
            change.apply(&mut file.env_vars);
            decl::save(&path, &file)?;
        }
    }
    changed.result
}

/// The change on top of what runs: the declaration as deployed, with the env vars, commit
/// and ref of the release the agents run (the newest), else of the state's last good one.
/// `None`: nothing changes.
fn next_declaration(
    name: &str,
    change: &Change,
    fresh: &Fresh,
    format: Format,
) -> anyhow::Result<Option<run::Change>> {
    let entry = fresh
        .entry
        .as_ref()
        .ok_or_else(|| anyhow!("deployment {name:?} not found in the state"))?;
    let mut deployed = entry.declaration.clone();
    let (commit, git_ref) = match fresh.running() {
        Some(s) => {
            if let Some(spec) = &s.spec {
                deployed.env_vars = running_vars(&deployed.env_vars, &spec.env_vars);
            }
            (s.commit.clone(), s.git_ref.clone())
        }
        None => {
            let Some(current) = entry.history.iter().rev().find(|h| h.result == "ok") else {
                return Err(anyhow!(
                    "{name} has no release that deployed; deploy it with `deployctl run {name}` first"
                ));
            };
            (current.commit.clone(), current.git_ref.clone())
        }
    };
    if let Change::Unset(keys) = change {
        let missing: Vec<&str> = keys
            .iter()
            .filter(|k| !deployed.env_vars.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let has: Vec<&str> = deployed.env_vars.keys().map(String::as_str).collect();
            return Err(bad_input(format!(
                "KEY: {} {} not set on {name} (it has: {})",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                if has.is_empty() {
                    "none".to_string()
                } else {
                    has.join(", ")
                }
            )));
        }
    }
    let mut next = deployed.clone();
    change.apply(&mut next.env_vars);
    if next.env_vars == deployed.env_vars {
        if format == Format::Text {
            println!("No change: {name} has these values already");
        }
        return Ok(None);
    }
    next.validate(name)?;
    // The same code, still known by its ref; the same packages, so the same environment.
    next.git_ref = (!git_ref.is_empty()).then(|| git_ref.clone());
    if format == Format::Text {
        println!(
            "{} on {name}: same commit {} ({}), same environment, a new process",
            change.note(),
            crate::output::short_commit(&commit),
            if git_ref.is_empty() { "-" } else { &git_ref },
        );
    }
    let how = How {
        format,
        commit: Some(commit),
        note: change.note(),
        // The release it changes was deployed with its artifacts as they are.
        allow_unpinned: true,
        ..Default::default()
    };
    Ok(Some(run::Change {
        d: next,
        existing: None,
        how,
    }))
}

/// The env vars that run (the agent's), each written as the declaration writes it where
/// the values are the same.
fn running_vars(
    declared: &BTreeMap<String, Scalar>,
    running: &std::collections::HashMap<String, String>,
) -> BTreeMap<String, Scalar> {
    running
        .iter()
        .map(|(k, v)| {
            let value = match declared.get(k) {
                Some(d) if d.to_string() == *v => d.clone(),
                _ => Scalar::Text(v.clone()),
            };
            (k.clone(), value)
        })
        .collect()
}
