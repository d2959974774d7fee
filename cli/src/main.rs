//! `deployctl`: declare, deploy and manage apps on deploy-agents. `main` parses the
//! command line and dispatches to one module per command; errors map to exit codes
//! (0 ok, 1 failed, 2 bad input).

#![warn(unreachable_pub)]

mod client;
mod cmd;
mod decl;
mod error;
mod fsutil;
mod output;
mod project;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use output::Format;
use project::Project;

/// Deploy ML models, dashboards and APIs from git onto your own machines.
///
/// Quick start (the built-in `local` env starts a deploy-agent for you):
///
///   deployctl run iris --repo https://example.org/me/iris.git --ref v1.0.0 \
///       --command "python app.py" --pip scikit-learn --health-path /health
///
///   deployctl status iris     deployctl logs iris -f     deployctl remove iris
///
/// Exit codes: 0 worked, 1 an operation failed, 2 bad usage or input.
///
/// The built-in env `local` is the agent at DEPLOYCTL_LOCAL_ADDRESS (default
/// 127.0.0.1:7070); when nothing answers there, deployctl starts one in the background
/// (`deployctl local status|stop`), with its data and log in DEPLOYCTL_LOCAL_DATA_DIR
/// (default $XDG_DATA_HOME/deploy-agent or ~/.local/share/deploy-agent; as root
/// /var/lib/deploy-agent-local), running
/// DEPLOYCTL_AGENT_BIN (default: deploy-agent next to deployctl, else on PATH).
#[derive(Parser, Debug)]
#[command(name = "deployctl", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// The project directory (declarations, .deployctl.yaml, state); default: the
    /// nearest directory upwards with .deployctl.yaml, else the current one
    #[arg(long, global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// How long an agent may take to answer: connecting, a request such as status or
    /// nodes, and a keepalive ping during a deploy or `logs -f` (which may last); an agent
    /// that does not is named and the command exits 1
    #[arg(long, global = true, value_name = "DURATION", env = "DEPLOYCTL_TIMEOUT",
          default_value = "5s", value_parser = client::parse_timeout)]
    timeout: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Deploy: write NAME.deploy.yaml from the flags (over an existing one) and deploy it
    Run(Box<cmd::run::Args>),
    /// Write a declaration without deploying
    #[command(subcommand)]
    Declare(cmd::declare::Declare),
    /// Show every instance of a deployment (or of all): state, release, commit, pid, ...
    Status(cmd::status::Args),
    /// List the deployments in the state
    List,
    /// Show an app's output (or its deploy steps') from every instance
    Logs(cmd::logs::Args),
    /// Stop a deployment everywhere, delete its directories and its state entry
    Remove(cmd::remove::Args),
    /// POST JSON to a healthy instance's apply_path (default /predict) and print the reply
    Apply(cmd::apply::Args),
    /// A deployment's releases: number, time, ref, commit, packages hash, result
    History(cmd::history::Args),
    /// Deploy an earlier release again (default: the one before the current)
    Rollback(cmd::rollback::Args),
    /// The declaration types and each one's options with their defaults
    Types(cmd::types::Args),
    /// Read or change .deployctl.yaml (core.state.uri, core.default_env)
    #[command(subcommand)]
    Config(cmd::config::Config),
    /// The state itself: `state copy` copies every deployment's record and history to
    /// another backend (e.g. after switching core.state.uri); `state rebuild` rebuilds it
    /// from what the agents keep (e.g. after it was lost)
    #[command(subcommand)]
    State(cmd::statecopy::StateCommand),
    /// Each agent: reachable, version, hostname, CPU, memory, disk, load, deployments, capacity
    Nodes(cmd::nodes::Args),
    /// Manage an owner's secrets on the env's agents (values are never printed back)
    #[command(subcommand)]
    Secret(cmd::secret::Secret),
    /// Deploy a copy under a new name and owner (e.g. hand a deployment to a group)
    Clone(cmd::clone::Args),
    /// Before deploying: what works on this machine but would fail deployed, with fixes
    Check(cmd::check::Args),
    /// Stop the app everywhere and keep its release (status says stopped; `start` resumes)
    Stop(cmd::lifecycle::StopArgs),
    /// Start a stopped deployment's release again
    Start(cmd::lifecycle::StartArgs),
    /// A new process of the same release on every agent (no outage behind the node proxy)
    Restart(cmd::lifecycle::RestartArgs),
    /// Change a deployment's env vars without a new build (a new process, a history entry)
    #[command(subcommand)]
    Env(cmd::envvars::EnvVars),
    /// The agent deployctl starts by itself for the built-in env `local`: start, status, stop
    #[command(subcommand)]
    Local(cmd::local::Local),
    /// Run a one-off command in the deployed release (its env vars, secrets, venv), on a node
    Exec(cmd::exec::Args),
    /// What a run would change on each agent (commit, environment, packages, fields)
    Plan(Box<cmd::plan::Args>),
    /// A web page on 127.0.0.1 with every deployment of the env(s), one cell per agent
    Dashboard(cmd::dashboard::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if err.downcast_ref::<error::Reported>().is_none()
                && err.downcast_ref::<error::ExitWith>().is_none()
            {
                eprintln!("error: {err:#}");
            }
            let code = if err.downcast_ref::<error::BadInput>().is_some() {
                2
            } else {
                error::exit_code(&err)
            };
            ExitCode::from(code as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let mut project = Project::find(cli.project.as_deref())?;
    project.agent_timeout = cli.timeout;
    let format = cli.output;
    match cli.command {
        Command::Run(args) => cmd::run::run(&project, *args, format).await,
        Command::Declare(d) => cmd::declare::run(&project, d),
        Command::Status(args) => cmd::status::run(&project, args, format).await,
        Command::List => cmd::list::run(&project, format).await,
        Command::Logs(args) => cmd::logs::run(&project, args).await,
        Command::Remove(args) => cmd::remove::run(&project, args, format).await,
        Command::Apply(args) => cmd::apply::run(&project, args).await,
        Command::History(args) => cmd::history::run(&project, args, format).await,
        Command::Rollback(args) => cmd::rollback::run(&project, args, format).await,
        Command::Types(args) => cmd::types::run(args, format),
        Command::Config(c) => cmd::config::run(&project, c).await,
        Command::State(c) => cmd::statecopy::run(&project, c, format).await,
        Command::Nodes(args) => cmd::nodes::run(&project, args, format).await,
        Command::Secret(s) => cmd::secret::run(&project, s, format).await,
        Command::Clone(args) => cmd::clone::run(&project, args, format).await,
        Command::Check(args) => cmd::check::run(&project, args, format).await,
        Command::Stop(args) => cmd::lifecycle::stop(&project, args, format).await,
        Command::Start(args) => cmd::lifecycle::start(&project, args, format).await,
        Command::Restart(args) => cmd::lifecycle::restart(&project, args, format).await,
        Command::Env(c) => cmd::envvars::run(&project, c, format).await,
        Command::Local(c) => cmd::local::run(&project, c, format).await,
        Command::Exec(args) => cmd::exec::run(&project, args).await,
        Command::Plan(args) => cmd::plan::run(&project, *args, format).await,
        Command::Dashboard(args) => cmd::dashboard::run(&project, args).await,
    }
}
