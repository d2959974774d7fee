//! `logs NAME [-f] [-n N] [--deploy]`: the app's output (or the deploy steps') from every
//! instance; lines are prefixed with the agent when there is more than one.

use std::io::Write;

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use tokio::task::JoinSet;

use crate::client;
use crate::decl::{self, DeploymentDecl};
use crate::project::Project;
use crate::state;

#[derive(clap::Args, Debug)]
pub struct Args {
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

pub async fn run(project: &Project, args: Args) -> anyhow::Result<()> {
    decl::validate_name("name", &args.name)?;
    let st = state::open(project)?.load().await?;
    let env = match st.deployments.get(&args.name) {
        Some(d) => d.env.clone(),
        None => decl::load::<DeploymentDecl>(&project.deployment_file(&args.name))?
            .and_then(|d| d.env)
            .unwrap_or_else(|| project.default_env()),
    };
    let mut target = client::resolve_env(project, &env)?;
    target.builtin_local = false;
    let prefix = target.addresses.len() > 1;
    let mut set = JoinSet::new();
    for address in target.addresses.clone() {
        let target = target.clone();
        let req = pb::LogsRequest {
            name: args.name.clone(),
            follow: args.follow,
            lines: args.lines,
            deploy: args.deploy,
        };
        set.spawn(async move {
            let mut c = client::connect(&target, &address)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let mut stream = c
                .logs(req)
                .await
                .map_err(|s| client::status_text(&address, &s))?
                .into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(chunk)) => {
                        let mut out = std::io::stdout().lock();
                        if prefix {
                            for line in chunk.data.split_inclusive(|b| *b == b'\n') {
                                let _ = write!(out, "[{address}] ");
                                let _ = out.write_all(line);
                            }
                        } else {
                            let _ = out.write_all(&chunk.data);
                        }
                        let _ = out.flush();
                    }
                    Ok(None) => return Ok::<(), String>(()),
                    Err(s) => return Err(format!("{address}: log stream ended: {}", s.message())),
                }
            }
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("\n")))
    }
}
