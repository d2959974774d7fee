//! `secret set|list|rm --owner OWNER NAME`: an owner's secrets on every agent of an env.
//! Values come from standard input or `--from-file` and are never printed back.

use std::io::{IsTerminal, Read};

use anyhow::{anyhow, Context};
use clap::Subcommand;
use deployctl_proto::v1 as pb;

use crate::client::{self, AgentError, Call, CallError, Limit, Reply, Target};
use crate::error::bad_input;
use crate::output::{self, Format};
use crate::project::Project;

#[derive(Subcommand, Debug)]
pub(crate) enum Secret {
    /// Set a secret (value from standard input, or --from-file) on every agent of the env
    Set {
        /// An environment variable name: apps listing it in `secrets` get the value under it
        name: String,
        #[command(flatten)]
        scope: Scope,
        /// Read the value from this file instead of standard input
        #[arg(long, value_name = "FILE")]
        from_file: Option<std::path::PathBuf>,
        /// env (an app's environment variable), git-ssh-key (a private key for ssh git
        /// URLs) or git-https (user:password or a token for https git URLs)
        #[arg(long, default_value = "env")]
        kind: String,
    },
    /// List an owner's secrets (names and kinds, never values)
    List {
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a secret from every agent of the env
    Rm {
        name: String,
        #[command(flatten)]
        scope: Scope,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct Scope {
    /// user:NAME or group:NAME [default: you, user:$USER or the token's user]
    #[arg(long)]
    owner: Option<String>,
    /// The env whose agents keep the secret [default: core.default_env, else local]
    #[arg(long)]
    env: Option<String>,
}

impl Scope {
    /// The env's agents; `set` and `rm` start the built-in local agent when nothing answers
    /// (like `run`), `list` does not (it says to run `deployctl local start`).
    fn target(&self, project: &Project, autostart: bool) -> anyhow::Result<Target> {
        let env = self.env.clone().unwrap_or_else(|| project.default_env());
        let target = client::resolve_env(project, &env)?;
        Ok(if autostart {
            target
        } else {
            target.no_autostart()
        })
    }
}

/// Where a secret is: `env NAME (agent A)` / `env NAME (agents A, B)`.
fn place(target: &Target) -> String {
    let agents = if target.addresses.len() == 1 {
        "agent"
    } else {
        "agents"
    };
    format!(
        "env {} ({agents} {})",
        target.env,
        target.addresses.join(", ")
    )
}

/// The owner to use: the flag, else the caller as the first agent sees it.
pub(crate) async fn owner_or_caller(
    target: &Target,
    owner: Option<String>,
) -> anyhow::Result<String> {
    if let Some(o) = owner {
        if !(o.starts_with("user:") || o.starts_with("group:")) {
            return Err(bad_input(format!(
                "--owner: {o:?} must be user:NAME or group:NAME"
            )));
        }
        return Ok(o);
    }
    // Every agent knows the caller by the same token: the first answer will do, so one
    // hung agent does not decide.
    let mut replies = client::for_each_agent(target, Limit::Answer, |mut c: Call| async move {
        Ok(c.client.who_am_i(pb::WhoAmIRequest {}).await?.into_inner())
    });
    let mut errors = Vec::new();
    let me = loop {
        match replies.next().await {
            Some(Reply { result: Ok(me), .. }) => break me,
            Some(Reply { result: Err(e), .. }) => errors.push(e),
            None => {
                return Err(match errors.into_iter().next() {
                    Some(e) => agent_error(e),
                    None => anyhow!("env {} has no agents", target.env),
                })
            }
        }
    };
    Ok(if me.auth_enabled {
        format!("user:{}", me.user)
    } else {
        format!("user:{}", client::caller())
    })
}

pub(crate) async fn run(project: &Project, cmd: Secret, format: Format) -> anyhow::Result<()> {
    match cmd {
        Secret::Set {
            name,
            scope,
            from_file,
            kind,
        } => {
            let value = read_value(&name, from_file, &kind)?;
            set(project, &name, scope, value, &kind, format).await
        }
        Secret::List { scope } => list(project, scope, format).await,
        Secret::Rm { name, scope } => rm(project, &name, scope, format).await,
    }
}

/// The value from `--from-file` or standard input; a final newline is not part of a
/// password or token (`echo value |`, editors), but a key keeps its own.
fn read_value(
    name: &str,
    from_file: Option<std::path::PathBuf>,
    kind: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut value = match from_file {
        Some(f) => std::fs::read(&f)
            .map_err(|e| bad_input(format!("--from-file: cannot read {}: {e}", f.display())))?,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("Reading the value of {name} from standard input (end with Ctrl-D):");
            }
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .context("reading standard input")?;
            v
        }
    };
    if kind != "git-ssh-key" {
        while value.ends_with(b"\n") || value.ends_with(b"\r") {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(bad_input(
            "the value is empty (give it on standard input or with --from-file)",
        ));
    }
    Ok(value)
}

async fn set(
    project: &Project,
    name: &str,
    scope: Scope,
    value: Vec<u8>,
    kind: &str,
    format: Format,
) -> anyhow::Result<()> {
    let target = scope.target(project, true)?;
    let owner = owner_or_caller(&target, scope.owner).await?;
    let request = pb::SetSecretRequest {
        owner: owner.clone(),
        name: name.to_string(),
        value,
        kind: kind.to_string(),
    };
    let replies = client::for_each_agent(&target, Limit::Answer, move |mut c: Call| {
        let request = request.clone();
        async move { Ok(c.client.set_secret(request).await?.into_inner()) }
    });
    let (set, failed) = split(replies.all().await);
    if !failed.is_empty() {
        let what = format!("set secret {name} of {owner}");
        return Err(failure(&what, set.len(), failed));
    }
    if format == Format::Text {
        let kind = match kind {
            "env" => String::new(),
            k => format!(" ({k})"),
        };
        println!(
            "✓ secret {name}{kind} set for {owner} on {}",
            place(&target)
        );
    }
    Ok(())
}

async fn list(project: &Project, scope: Scope, format: Format) -> anyhow::Result<()> {
    let target = scope.target(project, false)?;
    let owner = owner_or_caller(&target, scope.owner).await?;
    let request = pb::ListSecretsRequest {
        owner: owner.clone(),
    };
    let replies = client::for_each_agent(&target, Limit::Answer, move |mut c: Call| {
        let request = request.clone();
        async move { Ok(c.client.list_secrets(request).await?.into_inner().secrets) }
    });
    let (lists, failed) = split(replies.all().await);
    if !failed.is_empty() {
        let what = format!("list the secrets of {owner}");
        return Err(failure(&what, lists.len(), failed));
    }
    print_list(&owner, &target, merge_lists(lists), format);
    Ok(())
}

/// One row per secret name: its kind and the agents that have it, sorted by name.
fn merge_lists(lists: Vec<(String, Vec<pb::SecretInfo>)>) -> Vec<(String, String, Vec<String>)> {
    let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
    for (address, list) in lists {
        for s in list {
            match rows.iter_mut().find(|r| r.0 == s.name) {
                Some(r) => r.2.push(address.clone()),
                None => rows.push((s.name, s.kind, vec![address.clone()])),
            }
        }
    }
    rows.sort();
    rows
}

fn print_list(
    owner: &str,
    target: &Target,
    rows: Vec<(String, String, Vec<String>)>,
    format: Format,
) {
    if format == Format::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(n, k, a)| serde_json::json!({"name": n, "kind": k, "agents": a}))
            .collect();
        let all = serde_json::json!({"owner": owner, "env": target.env, "secrets": list});
        println!("{all}");
        return;
    }
    if rows.is_empty() {
        println!("{owner} has no secrets on {}", place(target));
        return;
    }
    println!("Secrets of {owner} on {}:", place(target));
    let n = target.addresses.len();
    let table: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(name, kind, agents)| vec![name, kind, format!("{}/{n}", agents.len())])
        .collect();
    output::table(&["NAME", "KIND", "AGENTS"], &table);
}

async fn rm(project: &Project, name: &str, scope: Scope, format: Format) -> anyhow::Result<()> {
    let target = scope.target(project, true)?;
    let owner = owner_or_caller(&target, scope.owner).await?;
    let request = pb::RemoveSecretRequest {
        owner: owner.clone(),
        name: name.to_string(),
    };
    let replies = client::for_each_agent(&target, Limit::Answer, move |mut c: Call| {
        let request = request.clone();
        async move {
            match c.client.remove_secret(request).await {
                Ok(_) => Ok(true),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
                Err(s) => Err(CallError::from(s)),
            }
        }
    });
    let (answered, failed) = split(replies.all().await);
    let removed = answered.iter().filter(|(_, r)| *r).count();
    if !failed.is_empty() {
        let what = format!("remove secret {name} of {owner}");
        return Err(failure(&what, answered.len(), failed));
    }
    if removed == 0 {
        return Err(anyhow!(
            "{owner} has no secret {name:?} on {}",
            place(&target)
        ));
    }
    if format == Format::Text {
        let lacked = match target.addresses.len() - removed {
            0 => String::new(),
            n => format!("; {n} of its agents did not have it"),
        };
        println!(
            "✓ secret {name} of {owner} removed from {}{lacked}",
            place(&target)
        );
    }
    Ok(())
}

/// The agents that answered (address, result) and the errors of those that did not.
fn split<T>(replies: Vec<Reply<T>>) -> (Vec<(String, T)>, Vec<AgentError>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for r in replies {
        match r.result {
            Ok(v) => ok.push((r.address, v)),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

/// Some agents failed: each named with why. A request an agent refused as invalid is bad
/// input (exit 2).
fn failure(what: &str, done: usize, failed: Vec<AgentError>) -> anyhow::Error {
    let invalid = failed
        .iter()
        .any(|e| e.code == Some(tonic::Code::InvalidArgument));
    let reasons: Vec<String> = failed.into_iter().map(|e| e.message).collect();
    let msg = format!(
        "could not {what} on {} of {} agent(s):\n  {}",
        reasons.len(),
        reasons.len() + done,
        reasons.join("\n  ")
    );
    if invalid {
        bad_input(msg)
    } else {
        anyhow!(msg)
    }
}

/// One agent's failure as this command's error.
fn agent_error(e: AgentError) -> anyhow::Error {
    if e.code == Some(tonic::Code::InvalidArgument) {
        bad_input(e.message)
    } else {
        anyhow!(e.message)
    }
}
