//! `logs NAME [-f] [-n N] [--deploy]`: the app's output (or the deploy steps') from every
//! instance; lines are prefixed with the agent when there is more than one.

use std::io::Write;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;

use crate::client::{self, Call, CallError, Limit};
use crate::decl::{self, DeploymentDecl};
use crate::error::Reported;
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The deployment whose logs to show (as in `deployctl status`)
    pub name: String,
    /// Keep printing new output as it comes (Ctrl-C to stop)
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each instance (0: all)
    #[arg(short = 'n', long = "lines", default_value_t = 100)]
    pub lines: u32,
    /// The deploy steps' output (installer, start script, health) instead of the app's
    #[arg(long)]
    pub deploy: bool,
}

pub(crate) async fn run(project: &Project, args: Args) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    let st = state::open(project)?.load().await?;
    let env = match st.deployments.get(&args.name) {
        Some(d) => d.env.clone(),
        None => decl::load::<DeploymentDecl>(&project.deployment_file(&args.name))?
            .and_then(|d| d.env)
            .unwrap_or_else(|| project.default_env()),
    };
    let target = client::resolve_env(project, &env)?.no_autostart();
    let prefix = target.addresses.len() > 1;
    let req = pb::LogsRequest {
        name: args.name.clone(),
        follow: args.follow,
        lines: args.lines,
        deploy: args.deploy,
    };
    // Opening each stream is bounded by the timeout; following it, by keepalive pings
    // (`-f` legitimately lasts forever, a hung agent does not answer them).
    let mut streams = client::for_each_agent(&target, Limit::Stream, move |c| {
        print_stream(c, req.clone(), prefix)
    });
    // An agent that fails is named at once: with -f the others go on.
    let mut failed = false;
    while let Some(reply) = streams.next().await {
        if let Err(e) = reply.result {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    if failed {
        Err(anyhow!(Reported))
    } else {
        Ok(())
    }
}

/// Copies one agent's log stream to stdout, each line prefixed with the agent when asked.
async fn print_stream(mut c: Call, req: pb::LogsRequest, prefix: bool) -> Result<(), CallError> {
    let mut stream = client::answer(c.timeout, c.client.logs(req))
        .await?
        .into_inner();
    loop {
        let chunk = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(()),
            Err(s) => return Err(CallError::Broken(c.broken(&s).await)),
        };
        let mut out = std::io::stdout().lock();
        if prefix {
            for line in chunk.data.split_inclusive(|b| *b == b'\n') {
                let _ = write!(out, "[{}] ", c.address);
                let _ = out.write_all(line);
            }
        } else {
            let _ = out.write_all(&chunk.data);
        }
        let _ = out.flush();
    }
}
