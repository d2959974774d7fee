//! `stop NAME`, `start NAME`, `restart NAME`: operate a deployment without deploying.
//! `stop` stops the app on every agent of its env and keeps its release, environment and
//! record (status says stopped; an agent restart or a reboot does not start it); `start`
//! starts that release again; `restart` runs a new process of the same release — beside
//! the old one behind the node proxy, which switches once it is healthy (no outage) — on
//! every agent, or `--max-parallel` at a time.

use std::time::Duration;

use anyhow::anyhow;

use super::halt::{self, Halt, Halted};
use super::run::{self, Rollout};
use crate::client::{self, Target};
use crate::decl::{self, DeploymentDecl};
use crate::output::Format;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl stop iris            stop it everywhere; `deployctl status iris` says stopped
  deployctl stop iris --drain 0s stop at once, without letting load balancers notice first

Exit codes: 0 stopped on every agent that has it, 1 an agent failed or none has it, 2 bad input.")]
pub(crate) struct StopArgs {
    /// The deployment to stop (as in `deployctl status`)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How long each agent lets load balancers see the deployment's health endpoint answer
    /// 503 while it still serves, before it stops ("0s": at once) [default: the agent's
    /// lb_drain, when a load balancer checks it]
    #[arg(long, value_name = "DURATION")]
    pub drain: Option<String>,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl start iris           start the release `deployctl stop iris` stopped

Exit codes: 0 running (healthy) on every agent, 1 an agent failed, 2 bad input.")]
pub(crate) struct StartArgs {
    /// The deployment to start again (as in `deployctl status`)
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl restart iris                  every agent at once, each with no outage
  deployctl restart iris --max-parallel 1 one agent after the other (a rolling restart)

A restart re-reads the owner's secrets (a rotated secret reaches the app) but changes
nothing else: same commit, same environment, same env vars (`deployctl env set` changes
those). With `strategy: recreate` each agent has an outage as long as the app's start.

Exit codes: 0 healthy again on every agent, 1 an agent failed (its old process keeps
serving), 2 bad input.")]
pub(crate) struct RestartArgs {
    /// The deployment to restart (as in `deployctl status`)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Restart at most N agents at a time; a wave with a failed agent stops the others
    /// [default: every agent at once]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: Option<u32>,
}

/// The agents of the env `name` is deployed to, and its declaration as deployed. These
/// commands change something (start, stop, restart, exec): on the built-in env `local` they
/// start its agent when nothing answers, like `run` (after `local stop` its apps still run).
pub(crate) async fn target_of(
    project: &Project,
    name: &str,
) -> anyhow::Result<(Target, Option<DeploymentDecl>)> {
    decl::validate_name("NAME", name)?;
    let st = state::open(project)?.load().await?;
    let (env, declared) = state::env_of(project, &st, name)?;
    if declared.is_none() {
        return Err(anyhow!(
            "deployment {name:?} not found (not in the state, no declaration {})",
            project.deployment_file(name).display()
        ));
    }
    Ok((client::resolve_env(project, &env)?, declared))
}

fn announce(what: &str, name: &str, target: &Target, format: Format) {
    if format == Format::Text {
        println!(
            "{what} {name} on env {}: {}",
            target.env,
            target.addresses.join(", ")
        );
    }
}

pub(crate) async fn start(
    project: &Project,
    args: StartArgs,
    format: Format,
) -> anyhow::Result<()> {
    let (target, _) = target_of(project, &args.name).await?;
    super::fresh::reconcile_unknown(project, &args.name, format).await?;
    announce("Starting", &args.name, &target, format);
    run::relaunch(&args.name, &target, true, Rollout::default(), format).await
}

pub(crate) async fn restart(
    project: &Project,
    args: RestartArgs,
    format: Format,
) -> anyhow::Result<()> {
    let (target, _) = target_of(project, &args.name).await?;
    super::fresh::reconcile_unknown(project, &args.name, format).await?;
    announce("Restarting", &args.name, &target, format);
    let rollout = Rollout {
        max_parallel: args.max_parallel.map(|n| n as usize),
        canary: false,
    };
    run::relaunch(&args.name, &target, false, rollout, format).await
}

pub(crate) async fn stop(project: &Project, args: StopArgs, format: Format) -> anyhow::Result<()> {
    let name = &args.name;
    let (target, declared) = target_of(project, name).await?;
    super::fresh::reconcile_unknown(project, name, format).await?;
    let drain = halt::drain_flag(args.drain.as_deref())?;
    let limit = halt::limit(&target, drain, declared.as_ref(), Duration::from_secs(10));
    let print = |h: &Halted| {
        if let (Ok(Some(r)), Format::Text) = (&h.result, format) {
            println!("✓ stopped {name} on {} ({})", h.address, halt::how(r));
        }
    };
    let all = halt::each_agent(&target, Halt::Stop, name, drain, limit, print).await;
    if format == Format::Json {
        println!("{}", halt::json(name, all.iter().map(to_json).collect()));
    }
    let errors: Vec<&str> = all
        .iter()
        .filter_map(|h| h.result.as_ref().err())
        .map(String::as_str)
        .collect();
    if !errors.is_empty() {
        return Err(anyhow!(
            "could not stop {name} everywhere:\n  {}",
            errors.join("\n  ")
        ));
    }
    if !all.iter().any(|h| matches!(h.result, Ok(Some(_)))) {
        return Err(anyhow!(
            "{name} is not on any agent of env {}: nothing to stop",
            target.env
        ));
    }
    if format == Format::Text {
        println!(
            "{name} is stopped; its release and environment stay. `deployctl start {name}` starts it again"
        );
    }
    Ok(())
}

fn to_json(h: &Halted) -> (usize, serde_json::Value) {
    let json = match &h.result {
        Ok(Some(r)) => {
            serde_json::json!({"agent": h.address, "stopped": true, "pid": r.pid, "how": r.stopped})
        }
        Ok(None) => {
            serde_json::json!({"agent": h.address, "stopped": false, "reason": "not found"})
        }
        Err(e) => serde_json::json!({"agent": h.address, "stopped": false, "reason": e}),
    };
    (h.index, json)
}
