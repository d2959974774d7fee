//! `exec NAME [--agent ADDR] [-i] -- CMD...`: a one-off command on a node, in the deployed
//! release's checkout and workdir, with its environment, env vars and secrets, as its user
//! (like `heroku run` or `kamal app exec`). Output is streamed as it comes, the command's
//! exit code is deployctl's, and with `-i` standard input is forwarded.

use std::io::{IsTerminal, Read, Write};

use anyhow::anyhow;
use deployctl_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::{self, Call, CallError, Limit, Target};
use crate::error::{bad_input, ExitWith};
use crate::project::Project;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  deployctl exec iris -- python manage.py migrate
  deployctl exec iris -- python -c 'import sklearn; print(sklearn.__version__)'
  deployctl exec iris -i -- python scripts/score.py < batch.csv
  deployctl exec iris --agent 10.0.0.6:7070 -- ls -la data/

The command runs without a shell (write `sh -c '...'` for one), in the release's workdir,
with PATH starting at its Python environment, HOST, PORT, DEPLOYMENT_*, GIT_COMMIT, the
declared env vars and secrets (redacted in the output, as in logs). It is stopped when
deployctl is interrupted. Only the deployment's owner may run commands.

Exit codes: the command's own; 1 when it could not run (no release on the agent, agent
not answering), 2 bad input.")]
pub(crate) struct Args {
    /// The deployment whose release the command runs in
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The agent to run on [default: the first agent of the env that has a release]
    #[arg(long, value_name = "ADDR")]
    pub agent: Option<String>,
    /// Forward standard input to the command
    #[arg(short, long)]
    pub interactive: bool,
    /// The command and its arguments (after `--`)
    #[arg(value_name = "CMD", required = true, last = true)]
    pub command: Vec<String>,
}

/// How the command went on one agent.
enum Ran {
    Exited(i32),
    /// The agent has no release of it (or not the deployment): try another.
    NotHere(String),
}

pub(crate) async fn run(project: &Project, args: Args) -> anyhow::Result<()> {
    let (target, _) = super::lifecycle::target_of(project, &args.name).await?;
    let candidates = match &args.agent {
        Some(a) => {
            let want = client::normalize(a);
            if !target.addresses.contains(&want) {
                return Err(bad_input(format!(
                    "--agent: {a} is not an agent of env {} ({})",
                    target.env,
                    target.addresses.join(", ")
                )));
            }
            vec![want]
        }
        None => target.addresses.clone(),
    };
    let mut refusals = Vec::new();
    for address in candidates {
        let one = Target {
            addresses: vec![address.clone()],
            ..target.clone()
        };
        match exec_on(&one, &args).await {
            Ok(Ran::Exited(0)) => return Ok(()),
            Ok(Ran::Exited(code)) => {
                return Err(ExitWith(u8::try_from(code).unwrap_or(1)).into());
            }
            Ok(Ran::NotHere(why)) => refusals.push(format!("{address}: {why}")),
            Err(e) => return Err(e),
        }
    }
    Err(anyhow!(
        "cannot run the command for {}:\n  {}",
        args.name,
        refusals.join("\n  ")
    ))
}

async fn exec_on(target: &Target, args: &Args) -> anyhow::Result<Ran> {
    let first = pb::ExecInput {
        name: args.name.clone(),
        argv: args.command.clone(),
        stdin: args.interactive,
        ..Default::default()
    };
    let interactive = args.interactive;
    let mut replies = client::for_each_agent(target, Limit::Stream, move |c: Call| {
        let first = first.clone();
        async move { stream(c, first, interactive).await }
    });
    match replies.next().await {
        Some(reply) => reply.result.map_err(|e| anyhow!(e.message)),
        None => Err(anyhow!("env {} has no agents", target.env)),
    }
}

async fn stream(mut c: Call, first: pb::ExecInput, interactive: bool) -> Result<Ran, CallError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ExecInput>(16);
    let _ = tx.send(first).await;
    if interactive {
        let tx = tx.clone();
        // Standard input is read on a thread of its own (it blocks), as it comes.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let m = pb::ExecInput {
                            data: buf[..n].to_vec(),
                            ..Default::default()
                        };
                        if tx.blocking_send(m).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.blocking_send(pb::ExecInput {
                eof: true,
                ..Default::default()
            });
        });
    }
    // Without -i, the request stream stays open (and empty) until the command ends.
    let opened = client::answer(c.timeout, c.client.exec(ReceiverStream::new(rx))).await;
    let mut output = match opened {
        Ok(r) => r.into_inner(),
        Err(CallError::Status(s))
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) =>
        {
            return Ok(Ran::NotHere(s.message().to_string()));
        }
        Err(e) => return Err(e),
    };
    loop {
        match output.message().await {
            Ok(Some(m)) => {
                if m.release > 0 && std::io::stderr().is_terminal() {
                    eprintln!("(release {} on {}, in {})", m.release, c.address, m.cwd);
                }
                if !m.stdout.is_empty() {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&m.stdout);
                    let _ = out.flush();
                }
                if !m.stderr.is_empty() {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(&m.stderr);
                    let _ = err.flush();
                }
                if m.exited {
                    drop(tx);
                    return Ok(Ran::Exited(m.exit_code));
                }
            }
            Ok(None) => {
                return Err(CallError::Status(tonic::Status::unavailable(format!(
                    "{} ended the command's stream without its exit status",
                    c.address
                ))))
            }
            Err(s) => {
                let why = c.broken(&s).await;
                return Err(CallError::Status(tonic::Status::unavailable(format!(
                    "lost the connection to {} while the command ran: {why}",
                    c.address
                ))));
            }
        }
    }
}
